"""Someone the bot can no longer reach: the supervisor on duty is told.

ARCHITECTURE.md: the sender "records permanent failures (bot blocked) and tells the
supervisor". The sender calls :func:`unreachable` inside the transaction that records the
failed messages, so the alert is written exactly when the failure is, and a restart between
the two can lose neither.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select

from bot.core.enums import Priority
from bot.core.messages import Msg
from bot.db.models import User
from bot.services.staff import supervisors_on_duty
from bot.services.uow import UnitOfWork


async def unreachable(uow: UnitOfWork, chat_ids: Collection[int]) -> None:
    """Tell the supervisor(s) on duty about each known user of ``chat_ids`` (one alert per
    person, however many of their messages failed); a supervisor is not told about themself.
    Chats of nobody we know (a group, a stranger) are left alone."""
    if not chat_ids:
        return
    users = list(
        await uow.session.scalars(
            select(User).where(User.chat_id.in_(sorted(set(chat_ids)))).order_by(User.id)
        )
    )
    if not users:
        return
    supervisors = await supervisors_on_duty(uow)
    for user in users:
        for supervisor in supervisors:
            if supervisor.id == user.id:
                continue
            await uow.out.send(
                Msg(
                    "alert_undeliverable",
                    {"name": user.name, "role": user.role},
                    user_id=supervisor.id,
                    priority=Priority.URGENT,
                )
            )
