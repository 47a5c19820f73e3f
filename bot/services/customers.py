"""Customers reach their job through a per-job deep link (or their shared contact)."""

from __future__ import annotations

from bot.db.models import Dispatch
from bot.services.staff import bot_username, deep_link, hash_code, new_code
from bot.services.uow import UnitOfWork

JOB_LINK_PREFIX = "job_"


async def customer_link(uow: UnitOfWork, dispatch: Dispatch) -> str:
    """A fresh deep link for the customer of ``dispatch`` (the old one stops working)."""
    code = new_code(JOB_LINK_PREFIX)
    dispatch.customer_link_hash = hash_code(code)
    await uow.session.flush()
    return deep_link(await bot_username(uow), code)
