"""DOMAIN.md §3, follow-ups (回访): after a job, after a delivery, and the December outreach.

- ``job_completed`` (called once a job is signed off) schedules the satisfaction follow-up
  ``FOLLOWUP_DELAY`` later and, for an installation, the first periodic one: monthly for
  ``FOLLOWUP_MONTHLY_MONTHS`` after delivery, then every ``FOLLOWUP_LATER_MONTHS``. Only the next
  periodic follow-up exists at any time; asking one schedules the next (the first date still
  ahead, so a downtime never produces a burst of missed ones).
- Month arithmetic keeps the delivery's day of the month, clamped to the month's end, counted
  from the delivery each time: delivered on 31 January → 28/29 February, 31 March, 30 April.
- Every question is a non-urgent message (it waits for the customer's day time) in the
  customer's language, with answer buttons: all good, or a problem → a repair job (a new
  dispatch linked to the job, offered to qualified engineers) or a complaint.
- The December outreach (a recurring timer, ``OUTREACH_CRON``) asks every customer with a job
  in the year about next year's needs; answers are stored and go to the account owner.
- ``/followups`` shows supervisors every question nobody answered, and customers nobody could
  ask in chat (to call them).
"""

from __future__ import annotations

import calendar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.config import Settings
from bot.core.callbacks import cb
from bot.core.enums import DispatchStatus, Priority, ServiceType
from bot.core.messages import Button, Msg
from bot.db.models import Customer, Dispatch, Equipment, User
from bot.db.models.followups import FollowUp
from bot.services import conversations, timers
from bot.services import dispatches as svc
from bot.services.errors import DomainError
from bot.services.uow import UnitOfWork

FOLLOWUP_ASK = "followup_ask"
OUTREACH = "followup_outreach"
OUTREACH_MORE = "followup_outreach_more"  # the next batch of one year's outreach
# Customers asked per transaction. The outreach goes to every customer of the year at once;
# in one transaction thousands of them would hold the database (on SQLite, the whole bot)
# for seconds, and every job step and escalation would wait behind them.
OUTREACH_BATCH = 100
FLOW = "followup"

SATISFACTION = "satisfaction"
PERIODIC = "periodic"
OUTREACH_KIND = "outreach"

SCHEDULED = "scheduled"
ASKED = "asked"
UNREACHABLE = "unreachable"  # no chat to ask in: a supervisor calls
ANSWERED = "answered"
OPEN = (ASKED, UNREACHABLE)

GOOD = "good"
REPAIR = "repair"
COMPLAINT = "complaint"
NEEDS = "needs"
NO_NEEDS = "none"

# Button action → what it answers; the ones that need a description first.
ACTIONS = {"ok": GOOD, "fix": REPAIR, "cmp": COMPLAINT, "need": NEEDS, "none": NO_NEEDS}
DESCRIBED = (REPAIR, COMPLAINT, NEEDS)
MAX_TEXT = 2000
SHOWN = 20  # /followups lists this many, then says how many more


def subject(dispatch_id: int) -> str:
    """The timer subject of a job's follow-ups (apart from the job's own deadlines)."""
    return f"followup:{dispatch_id}"


def question_ref(followup_id: int) -> str:
    return f"fu:{followup_id}"


# ---- dates ----------------------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """The same wall time ``months`` later, on the same day or the month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def next_seq(seq: int, settings: Settings) -> int:
    """After the follow-up ``seq`` months from delivery, the next one's month count."""
    if seq < settings.followup_monthly_months:
        return seq + 1
    return seq + settings.followup_later_months


def periodic_due(delivered_at: datetime, tz: str, seq: int) -> datetime:
    """When the follow-up ``seq`` months after delivery is due (wall time in ``tz``)."""
    local = delivered_at.astimezone(ZoneInfo(tz))
    return add_months(local, seq).astimezone(UTC)


def periodic_dates(
    delivered_at: datetime, tz: str, settings: Settings, count: int
) -> list[datetime]:
    """The first ``count`` periodic follow-up dates after a delivery (for tests and display)."""
    dates, seq = [], 0
    for _ in range(count):
        seq = next_seq(seq, settings)
        dates.append(periodic_due(delivered_at, tz, seq))
    return dates


# ---- scheduling -----------------------------------------------------------------------------


async def _by_key(uow: UnitOfWork, key: str) -> FollowUp | None:
    return await uow.session.scalar(select(FollowUp).where(FollowUp.key == key))


async def _site_tz(uow: UnitOfWork, dispatch: Dispatch) -> str:
    return svc.site_timezone(await svc.site_of(uow, dispatch), uow.settings.timezone)


async def _add(uow: UnitOfWork, followup: FollowUp, *, timer_subject: str) -> FollowUp:
    uow.session.add(followup)
    await uow.session.flush()
    await timers.schedule(
        uow,
        kind=FOLLOWUP_ASK,
        subject=timer_subject,
        due_at=followup.due_at,
        payload={"followup_id": followup.id},
    )
    return followup


async def job_completed(uow: UnitOfWork, dispatch: Dispatch) -> None:
    """After sign-off: the satisfaction follow-up and, for an installation, the periodic ones.

    Safe to call twice for one job (nothing is scheduled twice).
    """
    now = uow.clock.now()
    key = f"sat:{dispatch.id}"
    if await _by_key(uow, key) is None:
        await _add(
            uow,
            FollowUp(
                key=key,
                kind=SATISFACTION,
                status=SCHEDULED,
                customer_id=dispatch.customer_id,
                dispatch_id=dispatch.id,
                seq=0,
                due_at=now + uow.settings.followup_delay,
                created_at=now,
            ),
            timer_subject=subject(dispatch.id),
        )
    if dispatch.service_type != ServiceType.INSTALLATION:
        return
    started = await uow.session.scalar(
        select(FollowUp.id).where(FollowUp.dispatch_id == dispatch.id, FollowUp.kind == PERIODIC)
    )
    if started is not None:
        return
    for serial in dispatch.serials:
        equipment = await uow.session.scalar(
            select(Equipment).where(
                Equipment.model == dispatch.equipment_model, Equipment.serial == str(serial)
            )
        )
        if equipment is not None and equipment.delivered_at is None:
            equipment.delivered_at = now
    await _schedule_periodic(
        uow, dispatch, delivered_at=now, after_seq=0, tz=await _site_tz(uow, dispatch)
    )


async def _schedule_periodic(
    uow: UnitOfWork, dispatch: Dispatch, *, delivered_at: datetime, after_seq: int, tz: str
) -> FollowUp | None:
    """The next periodic follow-up whose date is still ahead (missed ones are skipped)."""
    now = uow.clock.now()
    seq = next_seq(after_seq, uow.settings)
    while periodic_due(delivered_at, tz, seq) <= now:
        seq = next_seq(seq, uow.settings)
    key = f"per:{dispatch.id}:{seq}"
    if await _by_key(uow, key) is not None:
        return None
    return await _add(
        uow,
        FollowUp(
            key=key,
            kind=PERIODIC,
            status=SCHEDULED,
            customer_id=dispatch.customer_id,
            dispatch_id=dispatch.id,
            seq=seq,
            delivered_at=delivered_at,
            due_at=periodic_due(delivered_at, tz, seq),
            created_at=now,
        ),
        timer_subject=subject(dispatch.id),
    )


# ---- asking ---------------------------------------------------------------------------------


async def _reachable(uow: UnitOfWork, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    user = await uow.session.get(User, user_id)
    if user is None or not user.active or user.chat_id is None:
        return None
    return user


def _buttons(followup: FollowUp) -> tuple[tuple[Button, ...], ...]:
    if followup.kind == OUTREACH_KIND:
        return (
            (Button.of("fu_needs", cb("fu", followup.id, "need")),),
            (Button.of("fu_no_needs", cb("fu", followup.id, "none")),),
        )
    return (
        (Button.of("fu_good", cb("fu", followup.id, "ok")),),
        (Button.of("fu_repair", cb("fu", followup.id, "fix")),),
        (Button.of("fu_complaint", cb("fu", followup.id, "cmp")),),
    )


async def _params(uow: UnitOfWork, followup: FollowUp) -> dict[str, Any]:
    params: dict[str, Any] = {"kind": followup.kind, "seq": followup.seq, "year": followup.year}
    customer = await uow.session.get(Customer, followup.customer_id)
    params["customer"] = customer.name if customer else ""
    dispatch = (
        await uow.session.get(Dispatch, followup.dispatch_id) if followup.dispatch_id else None
    )
    if dispatch is not None and followup.kind != OUTREACH_KIND:
        site = await svc.site_of(uow, dispatch)
        params.update(
            number=dispatch.number,
            service_type=dispatch.service_type,
            equipment_model=dispatch.equipment_model,
            quantity=dispatch.quantity,
            address=site.address,
            done_at=dispatch.closed_at or dispatch.reported_at or followup.created_at,
            delivered_at=followup.delivered_at,
        )
    return params


async def _ask(uow: UnitOfWork, followup: FollowUp, user: User | None) -> None:
    """Send the question (non-urgent: it waits for the customer's day time)."""
    now = uow.clock.now()
    followup.asked_at = now
    followup.status = UNREACHABLE
    if user is None:
        return
    followup.user_id = user.id
    sent = await uow.out.send(
        Msg(
            f"fu_{followup.kind}",
            await _params(uow, followup),
            user_id=user.id,
            buttons=_buttons(followup),
            priority=Priority.BULK,
            urgent=False,
            ref=question_ref(followup.id),
        )
    )
    if sent:
        followup.status = ASKED


async def ask(uow: UnitOfWork, followup_id: int) -> None:
    """Timer: ask a scheduled follow-up (and line up the next periodic one)."""
    followup = await uow.session.get(FollowUp, followup_id)
    if followup is None or followup.status != SCHEDULED:
        return
    dispatch = await svc.get_dispatch(uow, followup.dispatch_id) if followup.dispatch_id else None
    if dispatch is None:
        return
    if followup.kind == PERIODIC and followup.delivered_at is not None:
        await _schedule_periodic(
            uow,
            dispatch,
            delivered_at=followup.delivered_at,
            after_seq=followup.seq,
            tz=await _site_tz(uow, dispatch),
        )
    await _ask(uow, followup, await _reachable(uow, dispatch.customer_user_id))


async def december_outreach(uow: UnitOfWork, due_at: datetime) -> int:
    """Recurring timer: ask every customer with a job this year about next year's needs.

    Customers nobody can reach in chat are listed for the supervisors. Returns how many
    customers were asked (or listed) now; a repeated run asks nobody twice. At most
    ``OUTREACH_BATCH`` are asked in one transaction: when more are left, an ``OUTREACH_MORE``
    timer due now asks the next batch in a transaction of its own (the sweep's next tick).
    """
    zone = ZoneInfo(uow.settings.timezone)
    year = due_at.astimezone(zone).year
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    rows = await uow.session.execute(
        select(Dispatch.id, Dispatch.customer_id, Dispatch.customer_user_id)
        .where(
            Dispatch.window_start >= start,
            Dispatch.window_start < end,
            Dispatch.status != DispatchStatus.CANCELLED.value,
        )
        .order_by(Dispatch.window_start, Dispatch.id)
    )
    latest: dict[int, tuple[int, int | None]] = {}
    for dispatch_id, customer_id, user_id in rows:
        _, known_user = latest.get(customer_id, (0, None))
        latest[customer_id] = (dispatch_id, user_id or known_user)
    done = set(
        await uow.session.scalars(
            select(FollowUp.customer_id).where(
                FollowUp.kind == OUTREACH_KIND, FollowUp.year == year
            )
        )
    )
    left = [(c, ids) for c, ids in latest.items() if c not in done]
    now = uow.clock.now()
    for customer_id, (dispatch_id, user_id) in left[:OUTREACH_BATCH]:
        followup = FollowUp(
            key=f"out:{year}:{customer_id}",
            kind=OUTREACH_KIND,
            status=SCHEDULED,
            customer_id=customer_id,
            dispatch_id=dispatch_id,
            seq=0,
            year=year,
            due_at=due_at,
            created_at=now,
        )
        uow.session.add(followup)
        await uow.session.flush()
        await _ask(uow, followup, await _reachable(uow, user_id))
    if len(left) > OUTREACH_BATCH:
        await timers.schedule(
            uow,
            kind=OUTREACH_MORE,
            subject=f"outreach:{year}",
            due_at=now,
            payload={"due_at": due_at.isoformat()},
        )
    return min(len(left), OUTREACH_BATCH)


# ---- answers --------------------------------------------------------------------------------


async def _open_question(uow: UnitOfWork, user: User, followup_id: int) -> FollowUp:
    """The user's own follow-up, still waiting for an answer, or a polite refusal."""
    followup = await uow.session.get(FollowUp, followup_id)
    if followup is None or followup.user_id != user.id:
        raise DomainError("err_stale_button")
    if followup.status == ANSWERED:
        raise DomainError("fu_err_answered")
    if followup.status != ASKED:
        raise DomainError("err_stale_button")
    return followup


async def _answered(
    uow: UnitOfWork, user: User, followup: FollowUp, answer: str, *, note: str = "", ref: str = ""
) -> None:
    followup.status = ANSWERED
    followup.answer = answer
    followup.answered_at = uow.clock.now()
    followup.note = note or None
    followup.result_ref = ref or None
    params = await _params(uow, followup)
    params.update(answer=answer, ref=ref)
    await uow.out.send(Msg("fu_answered", params, user_id=user.id, edit=question_ref(followup.id)))


async def answer(uow: UnitOfWork, user: User, followup_id: int, action: str) -> None:
    """A button on a follow-up: all good / no needs at once; the others ask for a description."""
    chosen = ACTIONS.get(action)
    followup = await _open_question(uow, user, followup_id)
    allowed = (NEEDS, NO_NEEDS) if followup.kind == OUTREACH_KIND else (GOOD, REPAIR, COMPLAINT)
    if chosen is None or chosen not in allowed:
        raise DomainError("err_stale_button")
    if chosen in DESCRIBED:
        await conversations.enter(uow, user.id, FLOW, chosen, followup_id=followup.id)
        await uow.out.send(Msg("fu_describe", {"what": chosen}, user_id=user.id))
        return
    await _answered(uow, user, followup, chosen)


def _clean(text: str) -> str:
    text = text.strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > MAX_TEXT:
        raise DomainError("err_too_long", limit=MAX_TEXT)
    return text


async def described(uow: UnitOfWork, user: User, step: str, followup_id: int, text: str) -> None:
    """The description after "needs repair", "complaint" or "our needs": act on it."""
    followup = await _open_question(uow, user, followup_id)
    text = _clean(text)
    if step == REPAIR:
        job = await request_repair(uow, user, followup, text)
        await _answered(uow, user, followup, REPAIR, note=text, ref=job.number)
        await uow.out.send(Msg("fu_repair_created", {"number": job.number}, user_id=user.id))
    elif step == COMPLAINT:
        from bot.flows.complaints import open_complaint  # the complaints area's entry point

        parent = await svc.get_dispatch(uow, followup.dispatch_id) if followup.dispatch_id else None
        complaint = await open_complaint(
            uow,
            customer=user,
            dispatch=parent,
            category="product_fault",
            description=text,
            source="followup",
        )
        await _answered(uow, user, followup, COMPLAINT, note=text, ref=str(complaint.number))
    elif step == NEEDS:
        await _answered(uow, user, followup, NEEDS, note=text)
        params = {"answer": NEEDS, "year": followup.year, "number": "", "ref": ""}
        await uow.out.send(Msg("fu_answered", params, user_id=user.id))
        await _tell_account_owner(uow, followup, text)
    else:
        raise DomainError("err_stale_button")
    await conversations.leave(uow, user.id, FLOW)


async def request_repair(uow: UnitOfWork, user: User, followup: FollowUp, text: str) -> Dispatch:
    """A repair job linked to the followed-up job, offered to qualified engineers.

    Its window is the original job's time of day, on the first day at least a day ahead;
    the back office can move it.
    """
    from bot.flows.offers import start_offering

    parent = await svc.get_dispatch(uow, followup.dispatch_id) if followup.dispatch_id else None
    if parent is None:
        raise DomainError("err_stale_button")
    earliest = uow.clock.now() + timedelta(days=1)
    start = parent.window_start
    if start < earliest:
        start += timedelta(days=-((start - earliest) // timedelta(days=1)))
    child = await svc.create_linked_dispatch(
        uow,
        parent,
        window_start=start,
        source="followup",
        service_type=ServiceType.REPAIR.value,
        description=text,
        customer_user_id=user.id,
    )
    await svc.record(uow, child, "created", actor=user, source="followup", parent=parent.number)
    await svc.record(uow, parent, "repair_requested", actor=user, child=child.number)
    await start_offering(uow, child)
    return child


async def _tell_account_owner(uow: UnitOfWork, followup: FollowUp, text: str) -> None:
    customer = await uow.session.get(Customer, followup.customer_id)
    if customer is None or customer.account_owner_id is None:
        return
    await uow.out.send(
        Msg(
            "fu_needs_to_owner",
            {"customer": customer.name, "year": followup.year, "needs": text},
            user_id=customer.account_owner_id,
            urgent=False,
        )
    )


# ---- supervisors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Unanswered:
    kind: str
    status: str
    customer: str
    contact_name: str
    contact_phone: str
    number: str
    asked_at: datetime | None
    year: int | None


async def unanswered(uow: UnitOfWork, limit: int = SHOWN) -> tuple[list[Unanswered], int]:
    """Questions nobody answered (and customers nobody could ask), oldest first; and the total."""
    total = await uow.session.scalar(
        select(func.count()).select_from(FollowUp).where(FollowUp.status.in_(OPEN))
    )
    rows = await uow.session.execute(
        select(FollowUp, Customer.name, Dispatch)
        .join(Customer, Customer.id == FollowUp.customer_id)
        .outerjoin(Dispatch, Dispatch.id == FollowUp.dispatch_id)
        .where(FollowUp.status.in_(OPEN))
        .order_by(FollowUp.asked_at, FollowUp.id)
        .limit(limit)
    )
    items = [
        Unanswered(
            kind=followup.kind,
            status=followup.status,
            customer=name,
            contact_name=dispatch.contact_name if dispatch else "",
            contact_phone=dispatch.contact_phone if dispatch else "",
            number=dispatch.number if dispatch and followup.kind != OUTREACH_KIND else "",
            asked_at=followup.asked_at,
            year=followup.year,
        )
        for followup, name, dispatch in rows
    ]
    return items, int(total or 0)


async def show_unanswered(uow: UnitOfWork, viewer: User) -> None:
    """/followups: who did not answer, with the contact to call."""
    items, total = await unanswered(uow)
    await uow.out.send(
        Msg(
            "fu_unanswered",
            {"items": [asdict(item) for item in items], "total": total, "more": total - len(items)},
            user_id=viewer.id,
        )
    )
