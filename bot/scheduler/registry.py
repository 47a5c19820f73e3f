"""What each kind of timer does when it fires (each runs inside the sweep's transaction).

An action gets the unit of work of the sweep's batch and the timer's payload. It must not
commit: the sweep runs it inside a savepoint and commits its effects together with the timer's
"done" mark (or rolls them back and records the failure for a retry).

``RECURRING`` kinds are a durable cron: one pending row per kind, and when it fires (or finally
fails) the sweep schedules the next occurrence after *now* in the same transaction, so a restart
neither loses nor repeats one and a long downtime gives one late run, not one per missed period.
Their payload is ``{"due_at": "<ISO time it was due>"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.config import Settings
from bot.flows import complaints, customer, followups, job, offers
from bot.services.timers import next_cron
from bot.services.uow import UnitOfWork

TimerAction = Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]]
NextDue = Callable[[datetime, Settings], datetime | None]  # None: switched off


async def _offer_timeout(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    await offers.offer_timed_out(uow, int(payload["offer_id"]))


def _on_dispatch(action: Callable[[UnitOfWork, int], Awaitable[None]]) -> TimerAction:
    async def run(uow: UnitOfWork, payload: dict[str, Any]) -> None:
        await action(uow, int(payload["dispatch_id"]))

    return run


async def _followup_ask(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    await followups.ask(uow, int(payload["followup_id"]))


async def _outreach(uow: UnitOfWork, payload: dict[str, Any]) -> None:
    await followups.december_outreach(uow, datetime.fromisoformat(payload["due_at"]))


ACTIONS: dict[str, TimerAction] = {
    offers.OFFER_TIMEOUT: _offer_timeout,
    job.CONTACT_REMINDER: _on_dispatch(job.contact_reminder),
    job.CONTACT_OVERDUE: _on_dispatch(job.contact_overdue),
    job.ARRIVAL_REMINDER: _on_dispatch(job.arrival_reminder),
    job.ARRIVAL_OVERDUE: _on_dispatch(job.arrival_overdue),
    customer.SIGNOFF_REMINDER: _on_dispatch(customer.signoff_reminder),
    customer.SIGNOFF_ESCALATION: _on_dispatch(customer.signoff_escalation),
    followups.FOLLOWUP_ASK: _followup_ask,
    followups.OUTREACH: _outreach,
    followups.OUTREACH_MORE: _outreach,
    **{kind: complaints.on_complaint(action) for kind, action in complaints.TIMER_ACTIONS.items()},
}


def cron_setting(name: str) -> NextDue:
    """A recurring kind whose times are the cron setting ``name`` in TIMEZONE (``off``: none)."""

    def after(instant: datetime, settings: Settings) -> datetime | None:
        expression = str(getattr(settings, name))
        return next_cron(expression, settings.timezone, instant) if expression else None

    return after


RECURRING: dict[str, NextDue] = {
    followups.OUTREACH: cron_setting("outreach_cron"),
}


def register(kind: str, action: TimerAction, *, every: NextDue | None = None) -> None:
    """Add a timer kind; with ``every`` it is recurring (e.g. a cron setting, see next_cron)."""
    ACTIONS[kind] = action
    if every is not None:
        RECURRING[kind] = every
