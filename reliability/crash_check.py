"""Reading the database of a crash run, and comparing what happened.

Reads go through a plain async engine (no ``BEGIN IMMEDIATE``: on SQLite a WAL reader never
waits for the bot's writer, so the fake Bot API in the same event loop is never held up).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot.db.engine import async_url
from bot.db.models import Dispatch, DispatchEvent, Inbox, Offer, Outbox, Timer, User
from bot.db.models.customer import Feedback, SignOff
from bot.db.models.followups import FollowUp
from reliability.crash_load import VISIBLE, Call, delivery_key

# Left out of the comparison: times and ETAs (the clock differs between runs), row ids (the
# order rows are written in differs: who is whom is compared by Telegram id), and the hash of
# a text that contains times.
IGNORED_KEYS = ("at", "eta", "time", "id", "sha256", "customer_user_id")


def reader(url: str) -> AsyncEngine:
    return create_async_engine(async_url(url), poolclass=NullPool)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _timeless(value: Any) -> Any:
    """A JSON value without what depends on the clock (times, ETAs) or on file ids."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in IGNORED_KEYS or key.endswith("_at"):
                continue
            out[key] = len(item) if key == "photos" and isinstance(item, list) else _timeless(item)
        return out
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


@dataclass
class InFlight:
    """What the database says was under way when the bot was killed."""

    at: float  # time.monotonic() of the kill
    inbox: list[tuple[int, int | None]] = field(default_factory=list)  # (update_id, chat_id)
    outbox: list[tuple[int, tuple[str, str, str]]] = field(default_factory=list)  # (id, key)


async def in_flight(url: str, at: float) -> InFlight:
    """Rows holding an unexpired lease and not finished: claimed by the process just killed."""
    found = InFlight(at)
    now = datetime.now(UTC)
    engine = reader(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(Inbox.update_id, Inbox.chat_id, Inbox.locked_until).where(
                    Inbox.status == "pending", Inbox.locked_until.is_not(None)
                )
            )
            for update_id, chat_id, until in rows:
                if (_aware(until) or now) > now:
                    found.inbox.append((int(update_id), chat_id))
            rows = await conn.execute(
                select(Outbox.id, Outbox.method, Outbox.payload, Outbox.locked_until).where(
                    Outbox.status == "pending", Outbox.locked_until.is_not(None)
                )
            )
            for row_id, method, payload, until in rows:
                if (_aware(until) or now) > now:
                    found.outbox.append((int(row_id), delivery_key(method, payload)))
    finally:
        await engine.dispose()
    return found


async def backlog(url: str) -> dict[str, int]:
    """Work not finished yet: pending updates, messages, timers that are due."""
    now = datetime.now(UTC)
    engine = reader(url)
    try:
        async with engine.connect() as conn:
            inbox = len(
                list(await conn.execute(select(Inbox.update_id).where(Inbox.status == "pending")))
            )
            outbox = len(
                list(await conn.execute(select(Outbox.id).where(Outbox.status == "pending")))
            )
            due = [
                d
                for (d,) in await conn.execute(
                    select(Timer.due_at).where(Timer.status == "pending")
                )
                if (_aware(d) or now) <= now
            ]
    finally:
        await engine.dispose()
    return {"inbox": inbox, "outbox": outbox, "timers_due": len(due)}


async def wait_drained(url: str, timeout: float) -> dict[str, int]:
    """Poll until nothing is pending (returns the last backlog seen)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        left = await backlog(url)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


@dataclass
class Snapshot:
    jobs: dict[str, dict[str, Any]]  # by dispatch number
    timers: list[tuple[str, str, str, int]]  # (subject, kind, status, attempts)
    inbox: Counter[str]
    inbox_retried: int
    outbox: list[tuple[int, int, str, tuple[str, str, str], str, int, str | None]]
    # (id, chat_id, method, key, status, attempts, error)


async def snapshot(url: str) -> Snapshot:
    engine = reader(url)
    try:
        async with engine.connect() as conn:
            staff = {uid: no for uid, no in await conn.execute(select(User.id, User.staff_no))}
            telegram = {
                uid: tid for uid, tid in await conn.execute(select(User.id, User.telegram_id))
            }
            jobs: dict[str, dict[str, Any]] = {}
            by_id: dict[int, dict[str, Any]] = {}
            for d in (await conn.execute(select(Dispatch))).mappings():
                job = {
                    "status": d["status"],
                    "service_type": d["service_type"],
                    "engineer": staff.get(d["engineer_id"]),
                    "customer": telegram.get(d["customer_user_id"]),
                    "accepted": d["accepted_at"] is not None,
                    "contacted": d["contacted_at"] is not None,
                    "arrived": d["arrived_at"] is not None,
                    "reported": d["reported_at"] is not None,
                    "closed": d["closed_at"] is not None,
                    "eta_set": d["eta"] is not None,
                    "arrival": _timeless(d["arrival"]),
                    "report": _timeless(d["report"]),
                    "events": [],
                    "offers": [],
                    "signoffs": [],
                    "feedback": None,
                    "followups": [],
                    "timers": [],
                }
                jobs[d["number"]] = job
                by_id[d["id"]] = job
            for did, kind, src, dst in await conn.execute(
                select(
                    DispatchEvent.dispatch_id,
                    DispatchEvent.kind,
                    DispatchEvent.from_status,
                    DispatchEvent.to_status,
                ).order_by(DispatchEvent.id)
            ):
                by_id[did]["events"].append((kind, src, dst))
            for did, eng, status in await conn.execute(
                select(Offer.dispatch_id, Offer.engineer_id, Offer.status).order_by(Offer.id)
            ):
                by_id[did]["offers"].append((staff.get(eng), status))
            for did, method, status in await conn.execute(
                select(SignOff.dispatch_id, SignOff.method, SignOff.status).order_by(SignOff.id)
            ):
                by_id[did]["signoffs"].append((method, status))
            for did, rating, comment in await conn.execute(
                select(Feedback.dispatch_id, Feedback.rating, Feedback.comment)
            ):
                by_id[did]["feedback"] = (rating, comment)
            for did, kind, status, answer in await conn.execute(
                select(FollowUp.dispatch_id, FollowUp.kind, FollowUp.status, FollowUp.answer)
            ):
                if did in by_id:
                    by_id[did]["followups"].append((kind, status, answer))
            timers = []
            for subject, kind, status, attempts in await conn.execute(
                select(Timer.subject, Timer.kind, Timer.status, Timer.attempts).order_by(Timer.id)
            ):
                timers.append((subject, kind, status, int(attempts)))
            for job_id, job in by_id.items():
                mine = [t for t in timers if t[0].split(":")[-1] == str(job_id)]
                job["timers"] = sorted((k, s) for _, k, s, _ in mine)
                job["events"].sort()
                job["followups"].sort()
            inbox: Counter[str] = Counter()
            retried = 0
            for status, attempts in await conn.execute(select(Inbox.status, Inbox.attempts)):
                inbox[status] += 1
                retried += int(attempts) > 1
            outbox = [
                (int(i), int(c), m, delivery_key(m, p), s, int(a), e)
                for i, c, m, p, s, a, e in await conn.execute(
                    select(
                        Outbox.id,
                        Outbox.chat_id,
                        Outbox.method,
                        Outbox.payload,
                        Outbox.status,
                        Outbox.attempts,
                        Outbox.error,
                    ).order_by(Outbox.id)
                )
            ]
    finally:
        await engine.dispose()
    return Snapshot(jobs, timers, inbox, retried, outbox)


def _recurring(timers: Iterable[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
    return sorted(t for t in timers if t[0].startswith("recurring:"))


def compare_jobs(ref: Snapshot, run: Snapshot) -> list[str]:
    """Every difference in the jobs' final state (empty when identical)."""
    out = []
    for number in sorted(set(ref.jobs) | set(run.jobs)):
        a, b = ref.jobs.get(number), run.jobs.get(number)
        if a is None or b is None:
            out.append(f"{number}: only in {'the crash run' if a is None else 'the reference'}")
            continue
        for key in a:
            if a[key] != b[key]:
                out.append(f"{number}.{key}: reference {a[key]!r} ≠ crash run {b[key]!r}")
    if _recurring(ref.timers) != _recurring(run.timers):
        out.append(
            f"recurring timers: reference {_recurring(ref.timers)} ≠ {_recurring(run.timers)}"
        )
    return out


@dataclass
class Duplicate:
    chat: str
    method: str
    text: str
    copies: int
    first_at: float  # monotonic time the first copy reached the fake
    leased_at_kill: bool  # its outbox row held a lease when the bot was killed
    extra: int  # copies beyond the rows that asked for this message
    leased_kills: int  # at how many kills its row held a lease
    before_kill: float | None  # seconds from the first copy to the next kill (None: no kill after)
    gap: float  # seconds from the first copy to the second
    row_attempts: int = 0  # the outbox row's attempts (> 0: a send failed and was retried)
    row_error: str | None = None  # the error recorded for that failed attempt


@dataclass
class Deliveries:
    delivered: int = 0  # visible messages the fake accepted
    rows_sent: int = 0  # visible outbox rows marked sent
    duplicates: list[Duplicate] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # rows sent/pending/failed without a delivery
    repeated_edits: int = 0  # edit/answer calls refused as "not modified"/"already answered"
    failed_rows: Counter[str] = field(default_factory=Counter)
    per_chat: Counter[str] = field(default_factory=Counter)


def deliveries(
    calls: list[Call], snap: Snapshot, kills: list[InFlight], window: float
) -> Deliveries:
    """Count each visible message the fake accepted against the outbox rows that asked for it."""
    result = Deliveries()
    got: dict[tuple[str, str, str], list[Call]] = defaultdict(list)
    for call in calls:
        key = delivery_key(call.method, call.params)
        if call.status == 200 and call.method in VISIBLE:
            got[key].append(call)
            result.delivered += 1
            result.per_chat[key[1]] += 1
        elif call.status == 400 and call.method in ("editMessageText", "answerCallbackQuery"):
            result.repeated_edits += 1
    rows: Counter[tuple[str, str, str]] = Counter()
    row_of: dict[tuple[str, str, str], tuple[int, str | None]] = {}
    for _, _, method, key, status, attempts, error in snap.outbox:
        row_of[key] = (attempts, error)
        if method not in VISIBLE:
            if status == "failed":
                result.failed_rows[method] += 1
            continue
        if status == "sent":
            rows[key] += 1
            result.rows_sent += 1
        else:
            result.failed_rows[method] += 1
            result.lost.append(f"{status} row {key[0]} to chat {key[1]}: {key[2][:80]}")
    leased: Counter[tuple[str, str, str]] = Counter(key for k in kills for _, key in k.outbox)
    kill_times = sorted(k.at for k in kills)
    for key, copies in got.items():
        extra = len(copies) - rows.get(key, 0)
        if extra > 0:
            first = copies[0].started
            after = [t - first for t in kill_times if t >= first]
            result.duplicates.append(
                Duplicate(
                    chat=key[1],
                    method=key[0],
                    text=key[2][:100],
                    copies=len(copies),
                    first_at=first,
                    leased_at_kill=key in leased,
                    extra=extra,
                    leased_kills=leased[key],
                    before_kill=after[0] if after else None,
                    gap=copies[1].started - first,
                    row_attempts=row_of.get(key, (0, None))[0],
                    row_error=row_of.get(key, (0, None))[1],
                )
            )
    for key, count in rows.items():
        if len(got.get(key, [])) < count:
            result.lost.append(f"sent row without delivery in chat {key[1]}: {key[2][:80]}")
    return result


def in_flight_dup(dup: Duplicate, window: float) -> bool:
    """A duplicate explained by kills: its row was leased at as many kills as it has extra
    copies, or (one extra copy) its first copy reached Telegram at most ``window`` seconds
    before a kill."""
    if dup.leased_at_kill:  # each extra copy needs a kill that caught the row leased
        return dup.extra <= dup.leased_kills
    return dup.extra == 1 and dup.before_kill is not None and dup.before_kill <= window
