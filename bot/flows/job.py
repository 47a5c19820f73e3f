"""DOMAIN.md §1 steps 2–5, the engineer's job: contact, ETA, on the way, arrival, work report.

Each step is a status of the dispatch (see ``TRANSITIONS`` in services/dispatches.py); the
report being written is a draft stored on the dispatch, so /jobs resumes exactly where the
engineer stopped, also after a restart. Deadlines are timer rows (``KINDS`` below).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.core.callbacks import cb
from bot.core.enums import DispatchStatus, Outcome, Priority
from bot.core.messages import Button, KeyButton, Msg
from bot.db.models import Dispatch, User
from bot.flows.confidential import end_hold, private_ref
from bot.flows.customer import request_signoff
from bot.flows.offers import alert_unassigned, dispatch_params, make_offer
from bot.services import conversations, timers
from bot.services import dispatches as svc
from bot.services.errors import DomainError
from bot.services.geo import distance_m, travel_time
from bot.services.staff import supervisors_on_duty
from bot.services.uow import UnitOfWork

CONTACT_REMINDER = "contact_reminder"
CONTACT_OVERDUE = "contact_overdue"
ARRIVAL_REMINDER = "arrival_reminder"
ARRIVAL_OVERDUE = "arrival_overdue"
KINDS = (CONTACT_REMINDER, CONTACT_OVERDUE, ARRIVAL_REMINDER, ARRIVAL_OVERDUE)

FLOW = "job"
MAX_TEXT = 2000
MAX_PHOTOS = 20
MAX_PARTS = 30
MAX_QUANTITY = 9999
ETA_CHOICES = 4
LIVE_ETA_EVERY = timedelta(minutes=5)

REPORT_STEPS = ("outcome", "work", "parts", "photos", "extra", "confirm")
EMPTY_DRAFT: dict[str, Any] = {
    "outcome": None,
    "work_done": "",
    "parts": [],
    "photos": [],
    "extra_work": "",
}


# ---- helpers ----------------------------------------------------------------------------------


async def held_job(uow: UnitOfWork, engineer: User, dispatch_id: int) -> Dispatch:
    """The engineer's own open job, or a refusal (someone else's, finished, unknown)."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.engineer_id != engineer.id:
        raise DomainError("err_not_yours")
    if dispatch.status in (
        DispatchStatus.SIGNED_OFF,
        DispatchStatus.CLOSED,
        DispatchStatus.CANCELLED,
    ):
        raise DomainError("err_job_finished", number=dispatch.number)
    if dispatch.status in (DispatchStatus.OFFERED, DispatchStatus.UNASSIGNED, DispatchStatus.NEW):
        raise DomainError("err_not_yours")
    return dispatch


def require(dispatch: Dispatch, *statuses: DispatchStatus) -> None:
    if dispatch.status not in statuses:
        raise DomainError("err_job_state", number=dispatch.number, status=dispatch.status)


async def _ask_location(uow: UnitOfWork, engineer: User, dispatch: Dispatch) -> None:
    """The check-in prompt with the location button (the answer the arrival step wants)."""
    await uow.out.send(
        Msg(
            "job_share_location",
            {"number": dispatch.number},
            user_id=engineer.id,
            keyboard=((KeyButton("share_location", request_location=True),),),
        )
    )


async def _tz(uow: UnitOfWork, dispatch: Dispatch) -> str:
    return svc.site_timezone(await svc.site_of(uow, dispatch), uow.settings.timezone)


async def notify_customer(
    uow: UnitOfWork, dispatch: Dispatch, template: str, **params: Any
) -> bool:
    """Tell the job's customer (if they follow it in chat), in their language and site time."""
    if dispatch.customer_user_id is None:
        return False
    engineer = await uow.session.get(User, dispatch.engineer_id) if dispatch.engineer_id else None
    base: dict[str, Any] = {
        "number": dispatch.number,
        "engineer": engineer.name if engineer else "",
        "staff_no": engineer.staff_no if engineer else "",
        "engineer_phone": engineer.phone
        if engineer is not None and uow.settings.show_engineer_phone
        else "",
        "window_start": dispatch.window_start,
        "window_end": dispatch.window_end,
        "tz": await _tz(uow, dispatch),
    }
    base.update(params)
    return await uow.out.send(Msg(template, base, user_id=dispatch.customer_user_id))


async def alert_supervisors(
    uow: UnitOfWork, dispatch: Dispatch, template: str, **params: Any
) -> None:
    """An escalation with buttons to act on it, to the supervisor(s) on duty."""
    engineer = await uow.session.get(User, dispatch.engineer_id) if dispatch.engineer_id else None
    base = await dispatch_params(uow, dispatch, private=True)
    base.update(engineer=engineer.name if engineer else "", **params)
    buttons = (
        (
            Button.of("nudge", cb("job", dispatch.id, "nudge")),
            Button.of("reassign", cb("job", dispatch.id, "reasg")),
        ),
    )
    for supervisor in await supervisors_on_duty(uow):
        await uow.out.send(
            Msg(template, base, user_id=supervisor.id, buttons=buttons, priority=Priority.URGENT)
        )


def _minute(value: datetime) -> int:
    return int(value.timestamp() // 60)


def _from_minute(value: int, like: datetime) -> datetime:
    return datetime.fromtimestamp(value * 60, tz=like.tzinfo)


def eta_choices(dispatch: Dispatch, now: datetime, *, late: bool) -> list[datetime]:
    """Quick ETA buttons on quarter hours, the first at least 15 minutes from now.

    Inside the window (from its start at the earliest); when late, the next three hours.
    """
    first = now + timedelta(minutes=15)
    if not late:
        first = max(first, dispatch.window_start)
    if first.second or first.microsecond:
        first = first.replace(second=0, microsecond=0) + timedelta(minutes=1)
    first += timedelta(minutes=(15 - first.minute % 15) % 15)
    step = timedelta(minutes=15 if late else 30)
    end = now + timedelta(hours=3) if late else dispatch.window_end
    choices: list[datetime] = []
    current = first
    while current <= end and len(choices) < ETA_CHOICES:
        choices.append(current)
        current += step
    if not late and not choices and now <= dispatch.window_end:
        choices.append(dispatch.window_end.replace(second=0, microsecond=0))
    return choices


def check_eta(
    dispatch: Dispatch, eta: datetime, now: datetime, *, late: bool, tz: str = "UTC"
) -> None:
    """Refuse an ETA in the past, too far ahead, or (unless late) outside the window.

    ``tz`` is the site's zone: the refusal shows the window in it (a button's answer has no
    recipient zone to fall back on).
    """
    if eta < now - timedelta(minutes=1):
        raise DomainError("err_eta_past")
    if late:
        if eta > now + timedelta(hours=12):
            raise DomainError("err_eta_far")
        return
    if eta < dispatch.window_start or eta > dispatch.window_end:
        raise DomainError(
            "err_eta_window",
            window_start=dispatch.window_start,
            window_end=dispatch.window_end,
            tz=tz,
        )


_TIME = re.compile(r"^\s*(\d{1,2})(?:[:.：点]\s*(\d{2})|(\d{2}))?\s*(?:分)?\s*$")


def parse_time(text: str, dispatch: Dispatch, now: datetime, tz: str) -> datetime | None:
    """A typed ``14:30`` / ``1430`` / ``14点30`` as a moment in the site's time zone."""
    match = _TIME.match(text)
    if not match:
        return None
    hour = int(match.group(1))
    minute = int(match.group(2) or match.group(3) or 0)
    if hour > 23 or minute > 59:
        return None
    zone = ZoneInfo(tz)
    days = {
        now.astimezone(zone).date(),
        dispatch.window_start.astimezone(zone).date(),
        dispatch.window_end.astimezone(zone).date(),
        (now.astimezone(zone) + timedelta(days=1)).date(),
    }
    candidates = sorted(
        datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone).astimezone(now.tzinfo)
        for d in days
    )
    future = [c for c in candidates if c >= now - timedelta(minutes=1)]
    inside = [c for c in future if dispatch.window_start <= c <= dispatch.window_end]
    if inside:
        return inside[0]
    # Otherwise the nearest such time: one that passed an hour ago is that time (refused as
    # past), not the same time tomorrow (refused as outside the window, which confuses).
    return min(candidates, key=lambda c: abs(c - now))


def _late(dispatch: Dispatch) -> bool:
    return bool(dispatch.arrival.get("late"))


def _late_now(dispatch: Dispatch, now: datetime) -> bool:
    """Late: the arrival alert went out, or the window is over already."""
    return _late(dispatch) or now > dispatch.window_end


def _merged(dispatch: Dispatch, attr: str, **values: Any) -> dict[str, Any]:
    """A JSON column of the dispatch with these keys set (a new dict: the column is written
    whole)."""
    return {**getattr(dispatch, attr), **values}


# ---- step 2: contact the customer within CONTACT_DEADLINE -------------------------------------


async def after_accept(uow: UnitOfWork, engineer: User, dispatch: Dispatch) -> None:
    """Start the 15-minute clock and ask the engineer to call the customer."""
    now = uow.clock.now()
    deadline = uow.settings.contact_deadline
    subject = svc.subject(dispatch.id)
    await timers.schedule(
        uow,
        kind=CONTACT_REMINDER,
        subject=subject,
        due_at=now + deadline * 2 / 3,
        payload={"dispatch_id": dispatch.id},
    )
    await timers.schedule(
        uow,
        kind=CONTACT_OVERDUE,
        subject=subject,
        due_at=now + deadline,
        payload={"dispatch_id": dispatch.id},
    )
    await notify_customer(uow, dispatch, "cust_engineer_assigned")
    await conversations.enter(uow, engineer.id, FLOW, "contact", dispatch_id=dispatch.id)
    await prompt_contact(uow, engineer, dispatch)


async def prompt_contact(uow: UnitOfWork, engineer: User, dispatch: Dispatch) -> None:
    params = await dispatch_params(uow, dispatch, private=True)
    params["deadline"] = (dispatch.accepted_at or uow.clock.now()) + uow.settings.contact_deadline
    params["minutes"] = int(uow.settings.contact_deadline.total_seconds() // 60)
    await uow.out.send(
        Msg(
            "job_call_customer",
            params,
            user_id=engineer.id,
            buttons=((Button.of("reached_customer", cb("job", dispatch.id, "ctd")),),),
            ref=private_ref(dispatch.id, engineer.id),
        )
    )


def _eta_buttons(
    dispatch: Dispatch, now: datetime, mode: str, tz: str
) -> tuple[tuple[Button, ...], ...]:
    late = mode == "late" or _late_now(dispatch, now)
    action = {"contact": "eta", "omw": "omw", "late": "leta"}[mode]
    return tuple(
        (Button.of("eta_at", cb("job", dispatch.id, action, _minute(c)), time=c, tz=tz),)
        for c in eta_choices(dispatch, now, late=late)
    )


async def ask_eta(
    uow: UnitOfWork, engineer: User, dispatch: Dispatch, mode: str, *, enter: bool = True
) -> None:
    """Quick ETA buttons (and typed times) — ``mode`` is contact, omw (on my way) or late.

    ``enter=False`` sends the buttons without making typed text an answer to them.
    """
    now = uow.clock.now()
    late = mode == "late" or _late_now(dispatch, now)
    tz = await _tz(uow, dispatch)
    rows = _eta_buttons(dispatch, now, mode, tz)
    if enter:
        await conversations.enter(uow, engineer.id, FLOW, f"eta_{mode}", dispatch_id=dispatch.id)
    await uow.out.send(
        Msg(
            "job_ask_eta",
            {
                "number": dispatch.number,
                "window_start": dispatch.window_start,
                "window_end": dispatch.window_end,
                "late": late,
                "tz": tz,
            },
            user_id=engineer.id,
            buttons=rows or None,
        )
    )


async def customer_reached(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    dispatch = await held_job(uow, engineer, dispatch_id)
    require(dispatch, DispatchStatus.ACCEPTED)
    await ask_eta(uow, engineer, dispatch, "contact")


async def set_eta(
    uow: UnitOfWork, engineer: User, dispatch_id: int, eta: datetime, mode: str
) -> Dispatch:
    """Record an ETA: confirms the contact, or starts the trip, or answers a late alert."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    now = uow.clock.now()
    tz = await _tz(uow, dispatch)
    subject = svc.subject(dispatch.id)
    if mode == "contact":
        require(dispatch, DispatchStatus.ACCEPTED)
        late = _late_now(dispatch, now)
        check_eta(dispatch, eta, now, late=late, tz=tz)
        await svc.record(
            uow,
            dispatch,
            "customer_contacted",
            actor=engineer,
            to_status=DispatchStatus.CONTACTED,
            changes={"eta": eta, "contacted_at": now},
            eta=eta.isoformat(),
        )
        await timers.cancel(uow, subject=subject, kinds=(CONTACT_REMINDER, CONTACT_OVERDUE))
        if late and not _late(dispatch):
            # Contact confirmed after the window ended: the job is late from the start.
            await svc.record(
                uow, dispatch, "late", changes={"arrival": _merged(dispatch, "arrival", late=True)}
            )
            await alert_supervisors(uow, dispatch, "alert_late_arrival")
        await _arm_arrival(uow, dispatch)
        await notify_customer(uow, dispatch, "cust_contacted", eta=eta)
    elif mode == "omw":
        require(dispatch, DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE)
        check_eta(dispatch, eta, now, late=_late_now(dispatch, now), tz=tz)
        await svc.record(
            uow,
            dispatch,
            "on_my_way",
            actor=engineer,
            to_status=DispatchStatus.EN_ROUTE,
            changes={"eta": eta},
            eta=eta.isoformat(),
        )
        await notify_customer(uow, dispatch, "cust_on_the_way", eta=eta)
    elif mode == "late":
        require(dispatch, DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE)
        if not _late_now(dispatch, now):
            raise DomainError("err_stale_button")  # late ETAs answer a late alert only
        check_eta(dispatch, eta, now, late=True, tz=tz)
        await svc.record(
            uow, dispatch, "new_eta", actor=engineer, changes={"eta": eta}, eta=eta.isoformat()
        )
        await notify_customer(uow, dispatch, "cust_new_eta", eta=eta)
    else:
        raise DomainError("err_stale_button")
    await conversations.enter(uow, engineer.id, FLOW, "arrival", dispatch_id=dispatch.id)
    await prompt_arrival(uow, engineer, dispatch, eta_set=True)
    return dispatch


async def _arm_arrival(uow: UnitOfWork, dispatch: Dispatch) -> None:
    """Reminder before the window ends, alert at its end (not again once the job is late)."""
    if _late(dispatch):
        return
    subject = svc.subject(dispatch.id)
    lead = uow.settings.arrival_reminder_lead
    now = uow.clock.now()
    reminder_at = dispatch.window_end - lead
    if reminder_at > now:
        await timers.schedule(
            uow,
            kind=ARRIVAL_REMINDER,
            subject=subject,
            due_at=reminder_at,
            payload={"dispatch_id": dispatch.id},
        )
    await timers.schedule(
        uow,
        kind=ARRIVAL_OVERDUE,
        subject=subject,
        due_at=max(dispatch.window_end, now),
        payload={"dispatch_id": dispatch.id},
    )


async def prompt_arrival(
    uow: UnitOfWork, engineer: User, dispatch: Dispatch, *, eta_set: bool = False
) -> None:
    """On the way / arrived: an inline 'on my way' button and a location keyboard."""
    params = await dispatch_params(uow, dispatch, private=True)
    params.update(eta=dispatch.eta, eta_set=eta_set)
    await uow.out.send(
        Msg(
            "job_next_arrival",
            params,
            user_id=engineer.id,
            buttons=((Button.of("on_my_way", cb("job", dispatch.id, "way")),),),
            ref=private_ref(dispatch.id, engineer.id),
        )
    )
    await _ask_location(uow, engineer, dispatch)


# ---- step 3: on my way ------------------------------------------------------------------------


async def on_my_way(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    dispatch = await held_job(uow, engineer, dispatch_id)
    require(dispatch, DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE)
    await ask_eta(uow, engineer, dispatch, "omw")


# ---- step 4: arrival check-in -----------------------------------------------------------------


async def check_in(
    uow: UnitOfWork,
    engineer: User,
    dispatch: Dispatch,
    *,
    latitude: float | None,
    longitude: float | None,
    typed_address: str = "",
    auto: bool = False,
) -> None:
    """Record arrival: time, place, distance from the site, inside the window or not."""
    require(dispatch, DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE)
    now = uow.clock.now()
    site = await svc.site_of(uow, dispatch)
    distance = None
    if (
        latitude is not None
        and longitude is not None
        and site.latitude is not None
        and site.longitude is not None
    ):
        distance = round(distance_m(latitude, longitude, site.latitude, site.longitude))
    inside = svc.in_window(dispatch, now)
    verified = latitude is not None
    far = distance is not None and distance > uow.settings.checkin_radius
    arrival = _merged(
        dispatch,
        "arrival",
        at=now.isoformat(),
        latitude=latitude,
        longitude=longitude,
        distance_m=distance,
        in_window=inside,
        verified=verified,
        auto=auto,
        typed_address=typed_address or None,
        previous_status=dispatch.status,
    )
    await svc.record(
        uow,
        dispatch,
        "arrived",
        actor=engineer,
        to_status=DispatchStatus.ON_SITE,
        changes={"arrived_at": now, "arrival": arrival},
        latitude=latitude,
        longitude=longitude,
        distance_m=distance,
        in_window=inside,
        verified=verified,
        auto=auto,
        typed_address=typed_address or None,
    )
    await timers.cancel(
        uow, subject=svc.subject(dispatch.id), kinds=(ARRIVAL_REMINDER, ARRIVAL_OVERDUE)
    )
    tz = await _tz(uow, dispatch)
    await uow.out.send(
        Msg(
            "job_checked_in",
            {
                "number": dispatch.number,
                "at": now,
                "tz": tz,
                "in_window": inside,
                "distance": distance,
                "far": far,
                "radius": int(uow.settings.checkin_radius),
                "verified": verified,
                "auto": auto,
            },
            user_id=engineer.id,
            keyboard=(),  # the location keyboard has done its job
        )
    )
    if auto:  # a message carries one keyboard: the undo button comes in its own message
        await uow.out.send(
            Msg(
                "job_undo_offer",
                {"number": dispatch.number},
                user_id=engineer.id,
                buttons=((Button.of("undo_checkin", cb("job", dispatch.id, "undo")),),),
            )
        )
    await notify_customer(uow, dispatch, "cust_arrived")
    await start_report(uow, engineer, dispatch)


async def location_shared(
    uow: UnitOfWork,
    engineer: User,
    dispatch_id: int | None,
    *,
    latitude: float,
    longitude: float,
    live: bool,
    edited: bool,
) -> None:
    """A location from the engineer: a check-in, or a live location to follow.

    Updates of a live location (``edited``) only concern the job that live location is
    followed for, never another job that happens to be waiting.
    """
    dispatch = await _travelling_job(uow, engineer, dispatch_id, following=edited)
    if dispatch is None:
        if edited:
            return  # live updates after check-in or for no job: nothing to do, say nothing
        raise DomainError("err_no_job_for_location")
    if not live:
        await check_in(uow, engineer, dispatch, latitude=latitude, longitude=longitude)
        return
    site = await svc.site_of(uow, dispatch)
    if site.latitude is None or site.longitude is None:
        if not edited:
            await check_in(uow, engineer, dispatch, latitude=latitude, longitude=longitude)
        return
    distance = distance_m(latitude, longitude, site.latitude, site.longitude)
    if distance <= uow.settings.checkin_radius:
        if edited and dispatch.arrival.get("no_auto"):
            return  # the engineer undid a check-in here: wait until they leave or check in
        await check_in(uow, engineer, dispatch, latitude=latitude, longitude=longitude, auto=True)
        return
    if dispatch.arrival.get("no_auto"):
        # Left the site: automatic check-in again.
        await svc.write(uow, dispatch, arrival=_merged(dispatch, "arrival", no_auto=False))
    await _live_eta(uow, engineer, dispatch, distance, first=not edited)


async def _live_eta(
    uow: UnitOfWork, engineer: User, dispatch: Dispatch, distance: float, *, first: bool
) -> None:
    now = uow.clock.now()
    last = dispatch.arrival.get("live_eta_sent_at")
    if not first and last and now - datetime.fromisoformat(str(last)) < LIVE_ETA_EVERY:
        return
    eta = now + travel_time(distance)
    arrival = _merged(dispatch, "arrival", live=True, live_eta_sent_at=now.isoformat())
    await svc.write(uow, dispatch, eta=eta, arrival=arrival)
    if dispatch.status == DispatchStatus.CONTACTED:
        await svc.record(
            uow,
            dispatch,
            "on_my_way",
            actor=engineer,
            to_status=DispatchStatus.EN_ROUTE,
            eta=eta.isoformat(),
            live=True,
        )
    else:
        await svc.record(uow, dispatch, "live_eta", actor=engineer, eta=eta.isoformat())
    if first:
        await uow.out.send(
            Msg(
                "job_live_following",
                {"number": dispatch.number, "radius": int(uow.settings.checkin_radius)},
                user_id=engineer.id,
            )
        )
    await notify_customer(uow, dispatch, "cust_on_the_way", eta=eta)


async def _travelling_job(
    uow: UnitOfWork, engineer: User, dispatch_id: int | None, *, following: bool = False
) -> Dispatch | None:
    """The job a location is about: the conversation's, else the only one on the way.

    ``following``: only a job whose live location is being followed.
    """
    rows = list(
        await uow.session.scalars(
            select(Dispatch)
            .where(
                Dispatch.engineer_id == engineer.id,
                Dispatch.status.in_(
                    [DispatchStatus.CONTACTED.value, DispatchStatus.EN_ROUTE.value]
                ),
            )
            .order_by(Dispatch.window_start)
        )
    )
    if following:
        rows = [row for row in rows if row.arrival.get("live")]
    for row in rows:
        if row.id == dispatch_id:
            return row
    return rows[0] if len(rows) == 1 else None


async def typed_arrival(uow: UnitOfWork, engineer: User, dispatch_id: int, text: str) -> None:
    """A typed address instead of a location: accepted, marked as not verified."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    text = text.strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > 500:
        raise DomainError("err_too_long", limit=500)
    await check_in(uow, engineer, dispatch, latitude=None, longitude=None, typed_address=text)


async def undo_check_in(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    """Undo an automatic check-in made by the live location (a wrong one)."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    require(dispatch, DispatchStatus.ON_SITE)
    if not dispatch.arrival.get("auto") or dispatch.report.get("draft", {}).get("outcome"):
        raise DomainError("err_cannot_undo")
    previous = DispatchStatus(str(dispatch.arrival.get("previous_status") or "en_route"))
    # Still following the live location, but not checking in again at this same spot: the
    # next update inside the radius would undo the undo.
    arrival = {"late": dispatch.arrival.get("late", False), "live": True, "no_auto": True}
    await svc.record(
        uow,
        dispatch,
        "checkin_undone",
        actor=engineer,
        to_status=previous,
        changes={"arrived_at": None, "arrival": arrival, "report": {}},
    )
    await _arm_arrival(uow, dispatch)
    await conversations.enter(uow, engineer.id, FLOW, "arrival", dispatch_id=dispatch.id)
    await uow.out.send(Msg("job_checkin_undone", {"number": dispatch.number}, user_id=engineer.id))
    await notify_customer(uow, dispatch, "cust_arrival_undone")
    await prompt_arrival(uow, engineer, dispatch)


# ---- step 5: the work report ------------------------------------------------------------------


def _draft(dispatch: Dispatch) -> dict[str, Any]:
    return dict(dispatch.report.get("draft") or {})


async def _save_draft(
    uow: UnitOfWork, dispatch: Dispatch, draft: dict[str, Any], step: str
) -> None:
    await svc.write(uow, dispatch, report=_merged(dispatch, "report", draft=draft, step=step))


async def start_report(uow: UnitOfWork, engineer: User, dispatch: Dispatch) -> None:
    await _save_draft(uow, dispatch, _draft(dispatch), _draft_step(dispatch) or "outcome")
    await prompt_report_step(uow, engineer, dispatch)


def _draft_step(dispatch: Dispatch) -> str:
    return str(dispatch.report.get("step") or "")


async def prompt_report_step(uow: UnitOfWork, engineer: User, dispatch: Dispatch) -> None:
    """Ask for the report step the draft is at (resumable)."""
    step = _draft_step(dispatch) or "outcome"
    await conversations.enter(uow, engineer.id, FLOW, f"report_{step}", dispatch_id=dispatch.id)
    # Every field present (templates are strict): no photos is an empty list, not a gap.
    draft = {**EMPTY_DRAFT, **_draft(dispatch)}
    await uow.out.send(
        Msg(
            f"report_{step}",
            {"number": dispatch.number, "draft": draft, "max_photos": MAX_PHOTOS},
            user_id=engineer.id,
            buttons=_report_buttons(dispatch, step),
        )
    )


def _report_buttons(dispatch: Dispatch, step: str) -> tuple[tuple[Button, ...], ...] | None:
    """The buttons of report step ``step`` (outcome, parts, …); None where it takes text only."""
    if step == "outcome":
        return tuple(
            (Button.of(f"outcome_{o.value}", cb("job", dispatch.id, "out", o.value)),)
            for o in Outcome
        )
    if step == "parts":
        return ((Button.of("no_parts", cb("job", dispatch.id, "nopa")),),)
    if step == "photos":
        return ((Button.of("photos_done", cb("job", dispatch.id, "phd")),),)
    if step == "extra":
        return ((Button.of("no_extra", cb("job", dispatch.id, "noex")),),)
    if step == "confirm":
        return (
            (Button.of("submit_report", cb("job", dispatch.id, "sub")),),
            (Button.of("redo_report", cb("job", dispatch.id, "redo")),),
        )
    return None


async def _report_job(
    uow: UnitOfWork, engineer: User, dispatch_id: int, step: str
) -> tuple[Dispatch, dict[str, Any]]:
    dispatch = await held_job(uow, engineer, dispatch_id)
    require(dispatch, DispatchStatus.ON_SITE)
    if _draft_step(dispatch) != step:
        raise DomainError("err_stale_button")
    return dispatch, _draft(dispatch)


async def report_outcome(uow: UnitOfWork, engineer: User, dispatch_id: int, outcome: str) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "outcome")
    try:
        draft["outcome"] = Outcome(outcome).value
    except ValueError:
        raise DomainError("err_stale_button") from None
    await _save_draft(uow, dispatch, draft, "work")
    await prompt_report_step(uow, engineer, dispatch)


def _clean_text(text: str, limit: int = MAX_TEXT) -> str:
    text = text.strip()
    if not text:
        raise DomainError("err_text_empty")
    if len(text) > limit:
        raise DomainError("err_too_long", limit=limit)
    return text


async def report_work(uow: UnitOfWork, engineer: User, dispatch_id: int, text: str) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "work")
    draft["work_done"] = _clean_text(text)
    await _save_draft(uow, dispatch, draft, "parts")
    await prompt_report_step(uow, engineer, dispatch)


# "Relay x 2", "Relay x2", "Relay × 2", "Relay*2"; not "Bolt M8x20" (a size, quantity 1).
_PART = re.compile(r"^(.*?)(?:\s+x|\s*[×*])\s*(-?\d+)$", re.IGNORECASE)
_QUANTITY_ONLY = re.compile(r"^[x×*]?\s*-?\d+$", re.IGNORECASE)


def parse_parts(text: str) -> list[dict[str, Any]]:
    """One part a line: ``Compressor relay x 2`` (quantity 1 when omitted, 1–9999)."""
    parts = []
    for line in text.splitlines():
        line = line.strip().lstrip("-•").strip()
        if not line:
            continue
        if _QUANTITY_ONLY.match(line):
            raise DomainError("err_parts_format")  # a quantity without a name
        match = _PART.match(line)
        if match is None:
            name, quantity = line, 1
        else:
            digits = match.group(2)
            name, quantity = match.group(1).strip(), int(digits) if len(digits) <= 6 else 0
        if not name or len(name) > 200 or not 1 <= quantity <= MAX_QUANTITY:
            raise DomainError("err_parts_format")
        parts.append({"name": name, "quantity": quantity})
    if not parts:
        raise DomainError("err_parts_format")
    if len(parts) > MAX_PARTS:
        raise DomainError("err_too_many", limit=MAX_PARTS)
    return parts


async def report_parts(uow: UnitOfWork, engineer: User, dispatch_id: int, text: str | None) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "parts")
    draft["parts"] = parse_parts(text) if text is not None else []
    await _save_draft(uow, dispatch, draft, "photos")
    await prompt_report_step(uow, engineer, dispatch)


async def report_photo(uow: UnitOfWork, engineer: User, dispatch_id: int, file_id: str) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "photos")
    photos = list(draft.get("photos") or [])
    if len(photos) >= MAX_PHOTOS:
        raise DomainError("err_too_many", limit=MAX_PHOTOS)
    photos.append(file_id)
    draft["photos"] = photos
    await _save_draft(uow, dispatch, draft, "photos")
    await uow.out.send(
        Msg(
            "report_photo_saved",
            {"count": len(photos)},
            user_id=engineer.id,
            buttons=((Button.of("photos_done", cb("job", dispatch.id, "phd")),),),
        )
    )


async def report_photos_done(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "photos")
    draft.setdefault("photos", [])
    await _save_draft(uow, dispatch, draft, "extra")
    await prompt_report_step(uow, engineer, dispatch)


async def report_extra(uow: UnitOfWork, engineer: User, dispatch_id: int, text: str | None) -> None:
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "extra")
    draft["extra_work"] = _clean_text(text) if text is not None else ""
    await _save_draft(uow, dispatch, draft, "confirm")
    await prompt_report_step(uow, engineer, dispatch)


async def report_redo(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    dispatch, _ = await _report_job(uow, engineer, dispatch_id, "confirm")
    await _save_draft(uow, dispatch, {}, "outcome")
    await prompt_report_step(uow, engineer, dispatch)


async def submit_report(uow: UnitOfWork, engineer: User, dispatch_id: int) -> Dispatch:
    """The report is final: the job awaits the customer's sign-off; follow-ups are created."""
    dispatch, draft = await _report_job(uow, engineer, dispatch_id, "confirm")
    now = uow.clock.now()
    report = {
        key: draft.get(key) for key in ("outcome", "work_done", "parts", "photos", "extra_work")
    }
    report["submitted_at"] = now.isoformat()
    await svc.record(
        uow,
        dispatch,
        "report_submitted",
        actor=engineer,
        to_status=DispatchStatus.AWAITING_SIGNOFF,
        changes={"report": {"final": report}, "reported_at": now},
        outcome=report["outcome"],
        parts=len(report.get("parts") or []),
        photos=len(report.get("photos") or []),
    )
    await conversations.leave(uow, engineer.id, FLOW)
    follow_up = None
    if report["outcome"] in (Outcome.NEEDS_PARTS, Outcome.RETURN_VISIT):
        follow_up = await create_follow_up(
            uow, engineer, dispatch, str(report["outcome"]), offer=False
        )
    await uow.out.send(
        Msg(
            "report_submitted",
            {"number": dispatch.number, "follow_up": follow_up.number if follow_up else ""},
            user_id=engineer.id,
        )
    )
    if follow_up is not None:
        await make_offer(uow, follow_up, engineer)  # after the confirmation that announces it
    if report.get("extra_work"):
        await notify_customer(uow, dispatch, "cust_extra_work", extra_work=report["extra_work"])
    await request_signoff(uow, dispatch)  # step 6: the customer signs off (or on paper)
    return dispatch


async def create_follow_up(
    uow: UnitOfWork, engineer: User, parent: Dispatch, reason: str, *, offer: bool = True
) -> Dispatch:
    """'Needs parts' or 'return visit': a linked dispatch offered to the same engineer.

    Its window is the same time of day on the next day; the back office can move it.
    ``offer=False``: the caller makes the offer itself.
    """
    now = uow.clock.now()
    start = parent.window_start + timedelta(days=1)
    while start < now:
        start += timedelta(days=1)
    child = await svc.create_linked_dispatch(
        uow,
        parent,
        window_start=start,
        source="follow_up",
        requested_engineer_id=engineer.id,
        customer_user_id=parent.customer_user_id,
        created_by=engineer.id,
    )
    await svc.record(
        uow,
        child,
        "created",
        actor=engineer,
        source="follow_up",
        parent=parent.number,
        reason=reason,
    )
    await svc.record(uow, parent, "follow_up_created", actor=engineer, child=child.number)
    if offer:
        await make_offer(uow, child, engineer)
    return child


# ---- /jobs and resuming -----------------------------------------------------------------------


def next_step(dispatch: Dispatch) -> str:
    """The template key of what the engineer has to do next on ``dispatch``."""
    status = DispatchStatus(dispatch.status)
    if status is DispatchStatus.ON_SITE:
        return f"report_{_draft_step(dispatch) or 'outcome'}"
    return {
        DispatchStatus.ACCEPTED: "contact",
        DispatchStatus.CONTACTED: "arrive",
        DispatchStatus.EN_ROUTE: "arrive",
        DispatchStatus.AWAITING_SIGNOFF: "signoff",
    }.get(status, "none")


def next_deadline(dispatch: Dispatch, contact_deadline: timedelta) -> datetime | None:
    status = DispatchStatus(dispatch.status)
    if status is DispatchStatus.ACCEPTED and dispatch.accepted_at:
        return dispatch.accepted_at + contact_deadline
    if status in (DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE):
        return dispatch.window_end
    return None


async def list_jobs(uow: UnitOfWork, engineer: User) -> None:
    jobs = await svc.open_jobs_of(uow, engineer.id)
    items = []
    for job in jobs:
        customer = await svc.customer_of(uow, job)
        items.append(
            {
                "number": job.number,
                "customer": customer.name,
                "status": job.status,
                "step": next_step(job),
                "deadline": next_deadline(job, uow.settings.contact_deadline),
                "window_start": job.window_start,
                "window_end": job.window_end,
                "tz": await _tz(uow, job),
            }
        )
    buttons = tuple(
        (Button.of("open_job", cb("job", job.id, "open"), number=job.number),) for job in jobs
    )
    await uow.out.send(
        Msg("jobs_list", {"jobs": items}, user_id=engineer.id, buttons=buttons or None)
    )


async def open_job(uow: UnitOfWork, engineer: User, dispatch_id: int) -> None:
    """Resume the job's flow exactly where it stopped."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    status = DispatchStatus(dispatch.status)
    if status is DispatchStatus.ACCEPTED:
        await conversations.enter(uow, engineer.id, FLOW, "contact", dispatch_id=dispatch.id)
        await prompt_contact(uow, engineer, dispatch)
    elif status in (DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE):
        await conversations.enter(uow, engineer.id, FLOW, "arrival", dispatch_id=dispatch.id)
        await prompt_arrival(uow, engineer, dispatch)
    elif status is DispatchStatus.ON_SITE:
        await prompt_report_step(uow, engineer, dispatch)
    else:
        await uow.out.send(
            Msg("job_waiting_signoff", {"number": dispatch.number}, user_id=engineer.id)
        )


# ---- free text and photos while in a job step ---------------------------------------------------


async def on_text(uow: UnitOfWork, engineer: User, step: str, dispatch_id: int, text: str) -> None:
    """Free text in the middle of a job: what it means depends on the step."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    now = uow.clock.now()
    if step.startswith("eta_"):
        mode = step.removeprefix("eta_")
        eta = parse_time(text, dispatch, now, await _tz(uow, dispatch))
        if eta is None:
            raise DomainError("err_eta_format")
        await set_eta(uow, engineer, dispatch.id, eta, mode)
    elif step == "arrival":
        await typed_arrival(uow, engineer, dispatch.id, text)
    elif step == "report_work":
        await report_work(uow, engineer, dispatch.id, text)
    elif step == "report_parts":
        await report_parts(uow, engineer, dispatch.id, text)
    elif step == "report_extra":
        await report_extra(uow, engineer, dispatch.id, text)
    else:
        await remind(uow, engineer, step, dispatch.id)


TEXT_STEPS = ("arrival", "report_work", "report_parts", "report_extra")


async def remind(uow: UnitOfWork, engineer: User, step: str, dispatch_id: int) -> None:
    """The wrong kind of message at ``step``: one reply that says what the step takes, with
    the step's buttons on it; the job and the conversation stay exactly as they were."""
    dispatch = await held_job(uow, engineer, dispatch_id)
    buttons: tuple[tuple[Button, ...], ...] | None = None
    if step == "arrival":
        # A location (or a typed address) is wanted: the location button is the answer.
        await _ask_location(uow, engineer, dispatch)
        return
    if step == "contact":
        buttons = ((Button.of("reached_customer", cb("job", dispatch.id, "ctd")),),)
    elif step.startswith("eta_") and step.removeprefix("eta_") in ("contact", "omw", "late"):
        now = uow.clock.now()
        buttons = _eta_buttons(dispatch, now, step.removeprefix("eta_"), await _tz(uow, dispatch))
    elif step.startswith("report_") and dispatch.status == DispatchStatus.ON_SITE:
        buttons = _report_buttons(dispatch, step.removeprefix("report_"))
    wants_text = step.startswith("eta_") or step in TEXT_STEPS
    await uow.out.send(
        Msg(
            "expected_text" if wants_text else "expected_button",
            {},
            user_id=engineer.id,
            buttons=buttons or None,
        )
    )


# ---- timers -----------------------------------------------------------------------------------


async def contact_reminder(uow: UnitOfWork, dispatch_id: int) -> None:
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status != DispatchStatus.ACCEPTED or not dispatch.engineer_id:
        return
    deadline = (dispatch.accepted_at or uow.clock.now()) + uow.settings.contact_deadline
    await uow.out.send(
        Msg(
            "job_contact_reminder",
            {"number": dispatch.number, "deadline": deadline, "tz": await _tz(uow, dispatch)},
            user_id=dispatch.engineer_id,
            priority=Priority.URGENT,
            buttons=((Button.of("reached_customer", cb("job", dispatch.id, "ctd")),),),
        )
    )
    await svc.record(uow, dispatch, "contact_reminder_sent")


async def contact_overdue(uow: UnitOfWork, dispatch_id: int) -> None:
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status != DispatchStatus.ACCEPTED:
        return
    minutes = int(uow.settings.contact_deadline.total_seconds() // 60)
    await svc.record(uow, dispatch, "contact_overdue")
    await alert_supervisors(uow, dispatch, "alert_contact_overdue", minutes=minutes)


async def arrival_reminder(uow: UnitOfWork, dispatch_id: int) -> None:
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status not in (
        DispatchStatus.CONTACTED,
        DispatchStatus.EN_ROUTE,
    ):
        return
    assert dispatch.engineer_id is not None
    await uow.out.send(
        Msg(
            "job_arrival_reminder",
            {
                "number": dispatch.number,
                "window_end": dispatch.window_end,
                "tz": await _tz(uow, dispatch),
            },
            user_id=dispatch.engineer_id,
            priority=Priority.URGENT,
        )
    )
    await svc.record(uow, dispatch, "arrival_reminder_sent")


async def arrival_overdue(uow: UnitOfWork, dispatch_id: int) -> None:
    """Window over, no check-in: supervisor alerted, customer told, engineer asked for an ETA."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status not in (
        DispatchStatus.CONTACTED,
        DispatchStatus.EN_ROUTE,
    ):
        return
    await svc.record(
        uow, dispatch, "late", changes={"arrival": _merged(dispatch, "arrival", late=True)}
    )
    await alert_supervisors(uow, dispatch, "alert_late_arrival")
    await notify_customer(uow, dispatch, "cust_late")
    engineer = await uow.session.get(User, dispatch.engineer_id)
    if engineer is not None:
        await uow.out.send(
            Msg(
                "job_late",
                {"number": dispatch.number},
                user_id=engineer.id,
                priority=Priority.URGENT,
            )
        )
        # Typed text answers this ETA only if the engineer is not in the middle of something
        # else (e.g. another job's report); the buttons work either way.
        step = await conversations.current(uow, engineer.id)
        free = step is None or (step.flow == FLOW and step.data.get("dispatch_id") == dispatch.id)
        await ask_eta(uow, engineer, dispatch, "late", enter=free)


# ---- supervisor actions on escalations ----------------------------------------------------------


async def nudge(uow: UnitOfWork, supervisor: User, dispatch_id: int) -> None:
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if (
        dispatch is None
        or dispatch.engineer_id is None
        or dispatch.status
        not in (DispatchStatus.ACCEPTED, DispatchStatus.CONTACTED, DispatchStatus.EN_ROUTE)
    ):
        raise DomainError("err_escalation_over")
    await uow.out.send(
        Msg(
            "job_nudged",
            {"number": dispatch.number, "supervisor": supervisor.name},
            user_id=dispatch.engineer_id,
            priority=Priority.URGENT,
        )
    )
    await svc.record(uow, dispatch, "nudged", actor=supervisor)
    await uow.out.send(Msg("done_nudged", {"number": dispatch.number}, user_id=supervisor.id))


async def reassign(uow: UnitOfWork, supervisor: User, dispatch_id: int) -> None:
    """Take the job away from its engineer; the supervisor then picks someone (one tap)."""
    dispatch = await svc.get_dispatch(uow, dispatch_id)
    if dispatch is None or dispatch.status not in (
        DispatchStatus.ACCEPTED,
        DispatchStatus.CONTACTED,
        DispatchStatus.EN_ROUTE,
    ):
        raise DomainError("err_escalation_over")
    previous = dispatch.engineer_id
    await svc.record(
        uow,
        dispatch,
        "reassigned",
        actor=supervisor,
        to_status=DispatchStatus.UNASSIGNED,
        changes={"engineer_id": None, "arrival": {}, "eta": None, "contacted_at": None},
        engineer_id=previous,
    )
    await timers.cancel(uow, subject=svc.subject(dispatch.id), kinds=KINDS)
    if previous is not None:
        await end_hold(uow, dispatch, previous)
        step = await conversations.current(uow, previous)
        if step is not None and step.flow == FLOW and step.data.get("dispatch_id") == dispatch.id:
            await conversations.leave(uow, previous, FLOW)  # not their work on other jobs
        await uow.out.send(
            Msg("job_taken_away", {"number": dispatch.number}, user_id=previous, keyboard=())
        )
    await alert_unassigned(uow, dispatch)
