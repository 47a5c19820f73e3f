"""DOMAIN.md §1 step 1: offer a dispatch to qualified engineers, one at a time, with a timeout."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from bot.core.callbacks import cb
from bot.core.enums import (
    HELD_DISPATCH_STATUSES,
    DispatchStatus,
    OfferStatus,
    Priority,
    Role,
)
from bot.core.messages import Button, Msg
from bot.db.models import Dispatch, Offer, Qualification, User
from bot.services import dispatches as svc
from bot.services import timers
from bot.services.errors import DomainError
from bot.services.staff import supervisors_on_duty
from bot.services.uow import UnitOfWork

OFFER_TIMEOUT = "offer_timeout"
DECLINE_REASONS = ("busy", "far", "skill", "other")


def offer_ref(offer_id: int) -> str:
    return f"offer:{offer_id}"


async def dispatch_params(uow: UnitOfWork, dispatch: Dispatch, *, private: bool) -> dict[str, Any]:
    """What a message about ``dispatch`` may show; phone and address only when ``private``."""
    site = await svc.site_of(uow, dispatch)
    customer = await svc.customer_of(uow, dispatch)
    tz = svc.site_timezone(site, uow.settings.timezone)
    params: dict[str, Any] = {
        "number": dispatch.number,
        "customer": customer.name,
        "equipment_model": dispatch.equipment_model,
        "quantity": dispatch.quantity,
        "serials": ", ".join(str(s) for s in dispatch.serials),
        "service_type": dispatch.service_type,
        "window_start": dispatch.window_start,
        "window_end": dispatch.window_end,
        "description": dispatch.description or "",
        "tz": tz,
        "private": private,
    }
    if private:
        params.update(
            contact_name=dispatch.contact_name,
            contact_phone=dispatch.contact_phone,
            address=site.address,
        )
    return params


async def _candidates(uow: UnitOfWork, dispatch: Dispatch) -> list[User]:
    """Qualified engineers reachable in chat and not yet offered this job, least busy first."""
    offered = select(Offer.engineer_id).where(Offer.dispatch_id == dispatch.id)
    busy = (
        select(func.count(Dispatch.id))
        .where(
            Dispatch.engineer_id == User.id,
            Dispatch.status.in_([s.value for s in HELD_DISPATCH_STATUSES]),
        )
        .scalar_subquery()
    )
    stmt = (
        select(User)
        .join(Qualification, Qualification.user_id == User.id)
        .where(
            User.role == Role.ENGINEER.value,
            User.active.is_(True),
            User.chat_id.is_not(None),
            Qualification.skill == dispatch.service_type,
            User.id.not_in(offered),
        )
        .order_by(busy, User.id)
    )
    return list((await uow.session.scalars(stmt)).unique())


async def _next_engineer(uow: UnitOfWork, dispatch: Dispatch) -> User | None:
    if dispatch.requested_engineer_id is not None:
        asked = await uow.session.scalar(
            select(Offer.id).where(
                Offer.dispatch_id == dispatch.id,
                Offer.engineer_id == dispatch.requested_engineer_id,
            )
        )
        engineer = await uow.session.get(User, dispatch.requested_engineer_id)
        if asked is None and engineer is not None and engineer.active and engineer.chat_id:
            return engineer
    candidates = await _candidates(uow, dispatch)
    return candidates[0] if candidates else None


async def offer_next(uow: UnitOfWork, dispatch: Dispatch) -> Offer | None:
    """Offer ``dispatch`` to the next engineer, or tell the supervisor nobody is left."""
    engineer = await _next_engineer(uow, dispatch)
    if engineer is None:
        await svc.record(uow, dispatch, "nobody_left", to_status=DispatchStatus.UNASSIGNED)
        await alert_unassigned(uow, dispatch)
        return None
    return await make_offer(uow, dispatch, engineer)


async def make_offer(
    uow: UnitOfWork, dispatch: Dispatch, engineer: User, *, by: User | None = None
) -> Offer:
    now = uow.clock.now()
    offer = Offer(
        dispatch_id=dispatch.id,
        engineer_id=engineer.id,
        status=OfferStatus.PENDING,
        offered_at=now,
    )
    uow.session.add(offer)
    await uow.session.flush()
    await svc.record(
        uow,
        dispatch,
        "offered",
        actor=by,
        to_status=DispatchStatus.OFFERED,
        engineer_id=engineer.id,
    )
    await timers.schedule(
        uow,
        kind=OFFER_TIMEOUT,
        subject=svc.subject(dispatch.id),
        due_at=now + uow.settings.offer_timeout,
        payload={"offer_id": offer.id},
    )
    site = await svc.site_of(uow, dispatch)
    params = await dispatch_params(uow, dispatch, private=True)
    params["timeout_minutes"] = max(1, int(uow.settings.offer_timeout.total_seconds() // 60))
    await uow.out.send(
        Msg(
            "offer",
            params,
            user_id=engineer.id,
            buttons=(
                (
                    Button.of("accept", cb("off", offer.id, "acc")),
                    Button.of("decline", cb("off", offer.id, "dec")),
                ),
            ),
            ref=offer_ref(offer.id),
            location=(site.latitude, site.longitude)
            if site.latitude is not None and site.longitude is not None
            else None,
        )
    )
    return offer


async def alert_unassigned(uow: UnitOfWork, dispatch: Dispatch) -> None:
    """The on-duty supervisor gets one-tap buttons to assign any active engineer."""
    engineers = list(
        await uow.session.scalars(
            select(User)
            .where(
                User.role == Role.ENGINEER.value,
                User.active.is_(True),
                User.chat_id.is_not(None),
            )
            .order_by(User.id)
            .limit(8)
        )
    )
    buttons = tuple(
        (Button.of("assign_to", cb("job", dispatch.id, "asg", e.id), name=e.name),)
        for e in engineers
    )
    params = await dispatch_params(uow, dispatch, private=True)
    for supervisor in await supervisors_on_duty(uow):
        await uow.out.send(
            Msg(
                "alert_unassigned",
                params,
                user_id=supervisor.id,
                buttons=buttons or None,
                priority=Priority.URGENT,
            )
        )


async def _pending_offer(uow: UnitOfWork, offer_id: int, engineer: User) -> tuple[Offer, Dispatch]:
    offer = await uow.session.get(Offer, offer_id)
    if offer is None or offer.engineer_id != engineer.id:
        raise DomainError("err_not_yours")
    if offer.status != OfferStatus.PENDING:
        raise DomainError("err_offer_closed", status=offer.status)
    dispatch = await svc.get_dispatch(uow, offer.dispatch_id)
    assert dispatch is not None
    return offer, dispatch


async def _close_offer(uow: UnitOfWork, offer: Offer, status: OfferStatus) -> bool:
    """Atomically move a pending offer to ``status``; False if someone got there first."""
    now = uow.clock.now()
    result = await uow.session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.status == OfferStatus.PENDING.value)
        .values(status=status.value, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        await uow.session.refresh(offer)  # someone got there first: see what they did
        return False
    set_committed_value(offer, "status", status.value)  # what the row now holds
    set_committed_value(offer, "answered_at", now)
    return True


async def accept(uow: UnitOfWork, engineer: User, offer_id: int) -> Dispatch:
    """The engineer takes the job: one atomic change, so two engineers never both hold it."""
    offer, dispatch = await _pending_offer(uow, offer_id, engineer)
    taken = await uow.session.execute(
        update(Dispatch)
        .where(Dispatch.id == dispatch.id, Dispatch.status == DispatchStatus.OFFERED.value)
        .values(engineer_id=engineer.id)
        .execution_options(synchronize_session=False)
    )
    if not getattr(taken, "rowcount", 0) or not await _close_offer(
        uow, offer, OfferStatus.ACCEPTED
    ):
        raise DomainError("err_offer_closed", status="taken")
    set_committed_value(dispatch, "engineer_id", engineer.id)  # what the row now holds
    await svc.record(
        uow,
        dispatch,
        "accepted",
        actor=engineer,
        to_status=DispatchStatus.ACCEPTED,
        changes={"accepted_at": uow.clock.now()},
    )
    await timers.cancel(uow, subject=svc.subject(dispatch.id), kinds=(OFFER_TIMEOUT,))
    params = await dispatch_params(uow, dispatch, private=True)
    await uow.out.send(Msg("offer_accepted", params, user_id=engineer.id, edit=offer_ref(offer.id)))
    from bot.flows.job import after_accept  # the next step of the same conversation

    await after_accept(uow, engineer, dispatch)
    return dispatch


async def ask_decline_reason(uow: UnitOfWork, engineer: User, offer_id: int) -> None:
    offer, dispatch = await _pending_offer(uow, offer_id, engineer)
    buttons = tuple(
        (Button.of(f"reason_{reason}", cb("off", offer.id, "dr", reason)),)
        for reason in DECLINE_REASONS
    )
    await uow.out.send(
        Msg("decline_reason", {"number": dispatch.number}, user_id=engineer.id, buttons=buttons)
    )


async def decline(uow: UnitOfWork, engineer: User, offer_id: int, reason: str) -> Dispatch:
    """The engineer declines with a reason; the job moves on to the next engineer."""
    offer, dispatch = await _pending_offer(uow, offer_id, engineer)
    reason = reason.strip()
    if not reason:
        raise DomainError("err_reason_empty")
    if len(reason) > 500:
        raise DomainError("err_too_long", limit=500)
    if not await _close_offer(uow, offer, OfferStatus.DECLINED):
        raise DomainError("err_offer_closed", status=offer.status)
    offer.reason = reason
    await timers.cancel(uow, subject=svc.subject(dispatch.id), kinds=(OFFER_TIMEOUT,))
    await svc.record(uow, dispatch, "declined", actor=engineer, reason=reason)
    params = await dispatch_params(uow, dispatch, private=False)
    await uow.out.send(Msg("offer_declined", params, user_id=engineer.id, edit=offer_ref(offer.id)))
    await uow.out.delete_pins(engineer.id, [offer_ref(offer.id)])  # §7: the site's location
    await offer_next(uow, dispatch)
    return dispatch


async def offer_timed_out(uow: UnitOfWork, offer_id: int) -> None:
    """Timer: nobody answered; withdraw the offer (edit the message) and move on."""
    offer = await uow.session.get(Offer, offer_id)
    if offer is None or offer.status != OfferStatus.PENDING:
        return
    if not await _close_offer(uow, offer, OfferStatus.EXPIRED):
        return
    dispatch = await svc.get_dispatch(uow, offer.dispatch_id)
    assert dispatch is not None
    await svc.record(uow, dispatch, "offer_expired", engineer_id=offer.engineer_id)
    params = await dispatch_params(uow, dispatch, private=False)
    await uow.out.send(
        Msg("offer_withdrawn", params, user_id=offer.engineer_id, edit=offer_ref(offer.id))
    )
    await uow.out.delete_pins(offer.engineer_id, [offer_ref(offer.id)])  # §7: the location
    await offer_next(uow, dispatch)


async def assign_by_hand(
    uow: UnitOfWork, supervisor: User, dispatch_id: int, engineer_id: int
) -> Dispatch:
    """A supervisor offers an unassigned job to an engineer of their choice."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None:
        raise DomainError("err_not_found")
    if dispatch.status not in (DispatchStatus.UNASSIGNED, DispatchStatus.NEW):
        raise DomainError("err_job_state", number=dispatch.number, status=dispatch.status)
    engineer = await uow.session.get(User, engineer_id)
    if engineer is None or engineer.role != Role.ENGINEER or not engineer.active:
        raise DomainError("err_not_found")
    previous = await uow.session.scalar(
        select(Offer).where(Offer.dispatch_id == dispatch.id, Offer.engineer_id == engineer.id)
    )
    if previous is not None:
        await uow.session.delete(previous)  # a supervisor may ask again someone who declined
        await uow.session.flush()
    await make_offer(uow, dispatch, engineer, by=supervisor)
    await uow.out.send(
        Msg(
            "assigned_by_hand",
            {"number": dispatch.number, "name": engineer.name},
            user_id=supervisor.id,
        )
    )
    return dispatch


async def start_offering(uow: UnitOfWork, dispatch: Dispatch) -> Offer | None:
    """A new dispatch: offer it to the named engineer or the first free qualified one."""
    return await offer_next(uow, dispatch)
