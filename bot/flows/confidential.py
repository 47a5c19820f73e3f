"""DOMAIN.md §7: an engineer sees a customer's phone and address only while holding the job.

Every message that shows them to an engineer is queued under a ref that names the job and
the engineer: the offer under ``offer_ref`` (accepting edits it into the job card), the other
prompts under ``private_ref``. When the engineer's hold ends — signed off, closed, cancelled,
taken away — ``end_hold`` edits each of them into the job without the contact and address.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select

from bot.core.enums import OfferStatus
from bot.core.messages import Msg
from bot.db.models import Dispatch, Offer
from bot.flows.offers import dispatch_params, offer_ref
from bot.services.uow import UnitOfWork


def _private_prefix(dispatch_id: int, engineer_id: int) -> str:
    return f"pv:{dispatch_id}:{engineer_id}:"


def private_ref(dispatch_id: int, engineer_id: int) -> str:
    """A ref of its own for one message showing the job's private details to the engineer
    (an edit finds the newest message under a ref: each needs its own)."""
    return _private_prefix(dispatch_id, engineer_id) + secrets.token_hex(6)


async def end_hold(uow: UnitOfWork, dispatch: Dispatch, engineer_id: int) -> None:
    """``engineer_id`` no longer holds ``dispatch`` (call it after the status change): each
    message in their chat that showed the contact and address becomes the job without them
    and without buttons, in this transaction; one not sent yet is not sent at all."""
    offers = await uow.session.scalars(
        select(Offer.id).where(
            Offer.dispatch_id == dispatch.id,
            Offer.engineer_id == engineer_id,
            Offer.status == OfferStatus.ACCEPTED.value,
        )
    )
    params = await dispatch_params(uow, dispatch, private=False)
    params["status"] = dispatch.status
    await uow.out.replace_sent(
        Msg("job_private_removed", params, user_id=engineer_id),
        refs=[offer_ref(offer_id) for offer_id in offers],
        prefix=_private_prefix(dispatch.id, engineer_id),
    )
