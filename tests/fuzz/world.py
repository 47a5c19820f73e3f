"""A world where every role sits at every step of its conversations, built once per module,
and a sandbox that runs one update against it and rolls everything back afterwards.

Why a sandbox: hypothesis runs a test body many times, but building a job up to its report
step takes a dozen updates. So the world is built once (committed), and every example runs
inside an outer transaction on one connection (the bot's own commits become savepoint
releases), then rolls back: each example sees exactly the same world, valid inputs included.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.bootstrap import build_services
from bot.config import load_settings
from bot.core.clock import FakeClock
from bot.core.events import Event, Kind
from bot.db.models import Base, Offer, Outbox, User
from bot.db.models.complaints import Complaint
from bot.db.models.customer import SignOff
from bot.handlers.router import handle
from bot.i18n import Renderer, locale_for
from bot.services.context import Services
from bot.services.staff import Redeem, add_staff, redeem_invite
from tests.conftest import PG_URL, reset_database
from tests.helpers import dispatch_fields

T = TypeVar("T")
TEXT_METHODS = ("sendMessage", "editMessageText")
# Not domain state: the inbox (every update is recorded) and the outbox (checked apart).
UNTRACKED = {"inbox", "outbox"}
NEAR = (31.2310, 121.4740)  # 73 m from the default site


class RecordingRenderer(Renderer):
    """The real renderer, remembering what it rendered: (template, locale, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, str]] = []

    def render(self, key: str, locale: str, params: dict[str, Any]) -> str:
        text = super().render(key, locale, params)
        self.seen.append((key, locale, text))
        return text


@dataclass(frozen=True)
class Actor:
    """Someone in the world: who they are and where they stand."""

    name: str  # e.g. "engineer@report_work"
    telegram_id: int
    role: str  # engineer, customer, supervisor, stranger
    step: str  # the step they are at ("idle" when in no conversation)
    locale: str | None  # their stored locale (None for strangers: the event's language)
    user_id: int | None = None
    own: dict[str, int] = field(default_factory=dict)  # ids of their own things


@dataclass
class World:
    services: Services
    renderer: RecordingRenderer
    engine: AsyncEngine
    actors: list[Actor]
    others: dict[str, list[int]]  # ids of things, by kind, for "someone else's" buttons
    baseline: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    outbox_mark: int = 0

    def actor(self, name: str) -> Actor:
        return next(a for a in self.actors if a.name == name)


_update_ids = itertools.count(10_000_000)


def event_for(actor: Actor, kind: Kind, **fields: Any) -> Event:
    fields.setdefault("language", "en")
    return Event(
        update_id=next(_update_ids),
        kind=kind,
        telegram_id=actor.telegram_id,
        chat_id=actor.telegram_id,
        **fields,
    )


# ---- building ----------------------------------------------------------------------------


async def _do(services: Services, telegram_id: int, kind: Kind, **fields: Any) -> None:
    event = Event(
        update_id=next(_update_ids),
        kind=kind,
        telegram_id=telegram_id,
        chat_id=telegram_id,
        language="en",
        **fields,
    )
    await handle(services, event)


async def _press(services: Services, telegram_id: int, data: str) -> None:
    await _do(services, telegram_id, Kind.BUTTON, data=data, callback_id="b", message_id=1)


async def _say(services: Services, telegram_id: int, text: str) -> None:
    if text.startswith("/"):
        name, _, args = text[1:].partition(" ")
        await _do(services, telegram_id, Kind.COMMAND, text=text, command=name, args=args)
    else:
        await _do(services, telegram_id, Kind.TEXT, text=text)


async def _staff(services: Services, telegram_id: int, role: str, name: str, lang: str) -> User:
    async with services.uow() as uow:
        skills = ["repair"] if role == "engineer" else []
        new = await add_staff(uow, role=role, name=name, skills=skills, phone=None)
        await uow.commit()
    async with services.uow() as uow:
        result, user = await redeem_invite(
            uow, code=new.code, telegram_id=telegram_id, chat_id=telegram_id, language=lang
        )
        assert result is Redeem.OK and user is not None
        await uow.commit()
        return user


async def _customer(services: Services, telegram_id: int, locale: str, phone: str) -> User:
    async with services.uow() as uow:
        user = User(
            role="customer",
            name=f"Customer {telegram_id}",
            telegram_id=telegram_id,
            chat_id=telegram_id,
            phone=phone,
            locale=locale,
            active=True,
            on_duty=False,
            created_at=uow.clock.now(),
        )
        uow.session.add(user)
        await uow.commit()
        return user


async def _dispatch(services: Services, engineer: User, customer: User | None, n: int) -> int:
    from bot.flows.intake import create_dispatch

    phone = customer.phone if customer is not None and customer.phone else "+86 139 0000 0000"
    fields = dispatch_fields(
        services,
        engineer=engineer.staff_no,
        contact_phone=phone,
        address=f"{n} Century Avenue",
    )
    async with services.uow() as uow:
        dispatch = await create_dispatch(uow, fields, source="api")
        if customer is not None:
            dispatch.customer_user_id = customer.id
        await uow.commit()
        return dispatch.id


async def _scalar(services: Services, stmt: Any) -> Any:
    async with services.uow() as uow:
        return await uow.session.scalar(stmt)


async def _offer_of(services: Services, dispatch_id: int) -> int:
    return int(await _scalar(services, select(Offer.id).where(Offer.dispatch_id == dispatch_id)))


async def _signoff_of(services: Services, dispatch_id: int) -> int:
    found = await _scalar(services, select(SignOff.id).where(SignOff.dispatch_id == dispatch_id))
    return int(found)


ENGINEER_STEPS = (
    "offer",  # offered, not answered
    "decline",  # pressed Decline: the reason is asked
    "contact",
    "eta_contact",
    "arrival",
    "report_outcome",
    "report_work",
    "report_parts",
    "report_photos",
    "report_extra",
    "report_confirm",
    "paper",  # report submitted, uploading the signed paper form
)
CUSTOMER_STEPS = (
    "idle",  # a job in progress, no conversation
    "signoff",  # the work order to confirm or reject
    "reason",  # pressed Reject: the reason is asked
    "rate",  # confirmed: the rating is asked
    "comment",  # rated: the comment is asked
    "intake_category",  # /complaint: the category is asked
    "intake_job",  # the category chosen: which of their jobs it is about
    "intake_describe",  # the description is asked
    "intake_more",  # the complaint registered: more photos, voice notes or "Done"
    "answer",  # the complaint's owner asked them something
)


async def _walk_engineer(services: Services, tg: int, dispatch_id: int, upto: str) -> None:
    """Drive one engineer's job from the offer up to (and stopping at) ``upto``."""
    offer = await _offer_of(services, dispatch_id)
    if upto in ("offer", "decline"):
        if upto == "decline":
            await _press(services, tg, f"off:{offer}:dec")
        return
    window_start = (services.clock.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    eta_minute = int((window_start + timedelta(minutes=30)).timestamp() // 60)
    steps: list[tuple[str, Any]] = [
        ("contact", lambda: _press(services, tg, f"off:{offer}:acc")),
        ("eta_contact", lambda: _press(services, tg, f"job:{dispatch_id}:ctd")),
        ("arrival", lambda: _press(services, tg, f"job:{dispatch_id}:eta:{eta_minute}")),
        (
            "report_outcome",
            lambda: _do(services, tg, Kind.LOCATION, latitude=NEAR[0], longitude=NEAR[1]),
        ),
        ("report_work", lambda: _press(services, tg, f"job:{dispatch_id}:out:fixed")),
        ("report_parts", lambda: _say(services, tg, "Replaced the relay")),
        ("report_photos", lambda: _say(services, tg, "Relay x 2")),
        ("report_extra", lambda: _press(services, tg, f"job:{dispatch_id}:phd")),
        ("report_confirm", lambda: _press(services, tg, f"job:{dispatch_id}:noex")),
        ("submitted", lambda: _press(services, tg, f"job:{dispatch_id}:sub")),
        ("paper", lambda: _press(services, tg, f"pap:{dispatch_id}:up")),
    ]
    for name, action in steps:
        await action()
        if name == upto:
            return
    raise AssertionError(f"no step {upto!r}")


async def build_world(url: str) -> World:
    await reset_database(url)
    settings = load_settings(
        database_url=url,
        bot_token="123456789:AAEhBOweik9ai0Qa-test-token-xxxxxxxx",
        api_token="test-api-token",
        quiet_hours="off",
        bot_username="fieldbot_test_bot",
    )
    renderer = RecordingRenderer()
    services = build_services(settings, clock=FakeClock())
    services.renderer = renderer
    actors: list[Actor] = []
    n = itertools.count(1)

    sup = await _staff(services, 21, "supervisor", "Boss", "zh-hans")
    actors.append(Actor("supervisor@idle", 21, "supervisor", "idle", "zh_Hans", sup.id))
    sup2 = await _staff(services, 22, "supervisor", "Night Boss", "en")
    await _say(services, 22, "/handover")
    actors.append(Actor("supervisor@handover_notes", 22, "supervisor", "handover", "en", sup2.id))
    sup3 = await _staff(services, 23, "supervisor", "Fault Boss", "zh-hans")
    await _say(services, 23, "/fault new")
    actors.append(Actor("supervisor@fault_time", 23, "supervisor", "fault", "zh_Hans", sup3.id))

    # Engineers, one per step of the job, every other one in Chinese.
    dispatches: list[int] = []
    for i, step in enumerate(ENGINEER_STEPS):
        tg = 100 + i
        lang = "zh-hans" if i % 2 else "en"
        eng = await _staff(services, tg, "engineer", f"Eng {i}", lang)
        dispatch_id = await _dispatch(services, eng, None, next(n))
        dispatches.append(dispatch_id)
        await _walk_engineer(services, tg, dispatch_id, step)
        held = {"dispatch": dispatch_id, "offer": await _offer_of(services, dispatch_id)}
        actors.append(
            Actor(f"engineer@{step}", tg, "engineer", step, locale_for(lang), eng.id, held)
        )
    idle = await _staff(services, 150, "engineer", "Idle Eng", "zh-hans")
    actors.append(Actor("engineer@idle", 150, "engineer", "idle", "zh_Hans", idle.id))

    # Customers, one per step; one engineer (E 160) does all their jobs up to the report.
    done_by = await _staff(services, 160, "engineer", "Done Eng", "en")
    for i, step in enumerate(CUSTOMER_STEPS):
        tg = 7000 + i
        locale = "zh_Hans" if i % 2 else "en"
        cust = await _customer(services, tg, locale, f"+86 138 0013 80{i:02d}")
        dispatch_id = await _dispatch(services, done_by, cust, next(n))
        dispatches.append(dispatch_id)
        own: dict[str, int] = {"dispatch": dispatch_id}
        if step in ("signoff", "reason", "rate", "comment"):
            await _walk_engineer(services, 160, dispatch_id, "submitted")
            own["signoff"] = await _signoff_of(services, dispatch_id)
            if step == "reason":
                await _press(services, tg, f"so:{own['signoff']}:no")
            elif step in ("rate", "comment"):
                await _press(services, tg, f"so:{own['signoff']}:ok")
                if step == "comment":
                    await _press(services, tg, f"fb:{dispatch_id}:r:4")
        elif step.startswith("intake") or step == "answer":
            await _say(services, tg, "/complaint")
            if step != "intake_category":
                await _press(services, tg, f"cmi:{cust.id}:cat:quality")
            if step in ("intake_describe", "intake_more", "answer"):
                await _press(services, tg, f"cmi:{cust.id}:nojob")
            if step in ("intake_more", "answer"):
                await _say(services, tg, "The unit leaks")
                own["complaint"] = await _scalar(
                    services,
                    select(func.max(Complaint.id)).where(Complaint.customer_user_id == cust.id),
                )
            if step == "answer":
                await _press(services, tg, f"cmi:{cust.id}:done")
                # The on-duty supervisor takes it and asks the customer something.
                await _press(services, 21, f"cmp:{own['complaint']}:take")
                await _press(services, 21, f"cmp:{own['complaint']}:ask")
                await _say(services, 21, "Which floor is the unit on?")
        actors.append(Actor(f"customer@{step}", tg, "customer", step, locale, cust.id, own))

    # A supervisor writing to a complainant (their next message is relayed).
    sup4 = await _staff(services, 24, "supervisor", "Desk Boss", "en")
    more = next(a for a in actors if a.name == "customer@intake_more")
    await _press(services, 24, f"cmp:{more.own['complaint']}:take")
    await _press(services, 24, f"cmp:{more.own['complaint']}:reply")
    actors.append(
        Actor("supervisor@complaint_reply", 24, "supervisor", "complaint_reply", "en", sup4.id)
    )

    # Strangers: one who never wrote, one half-way through filing a complaint.
    actors.append(Actor("stranger@idle", 99_001, "stranger", "idle", None))
    for tg, step in ((99_002, "intake_name"), (99_003, "intake_phone")):
        await _say(services, tg, "/complaint")
        if step == "intake_phone":
            await _say(services, tg, "Zhang San")
        stranger = await _scalar(services, select(User).where(User.telegram_id == tg))
        # Now a customer record (without a job), half-way through the intake.
        actors.append(Actor(f"stranger@{step}", tg, "customer", step, stranger.locale, stranger.id))

    async with services.uow() as uow:
        signoffs = list(await uow.session.scalars(select(SignOff.id)))
        offers = list(await uow.session.scalars(select(Offer.id)))
        users = list(await uow.session.scalars(select(User.id)))
        complaints = list(await uow.session.scalars(select(Complaint.id)))
    world = World(
        services=services,
        renderer=renderer,
        engine=services.sessionmaker.kw["bind"],
        actors=actors,
        others={
            "dispatch": dispatches,
            "signoff": signoffs,
            "offer": offers,
            "user": users,
            "complaint": complaints,
        },
    )
    world.baseline = await snapshot_with(services)
    world.outbox_mark = int(await _scalar(services, select(func.max(Outbox.id))) or 0)
    return world


# ---- observing -----------------------------------------------------------------------------


async def snapshot_with(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every domain table (everything but the inbox and the outbox), as the
    driver returns it (no type processing: exact, and twice as fast)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with services.uow() as uow:
        conn = await uow.session.connection()
        for table in Base.metadata.sorted_tables:
            if table.name in UNTRACKED:
                continue
            result = await conn.exec_driver_sql(f'SELECT * FROM "{table.name}"')
            out[table.name] = sorted((tuple(row) for row in result.fetchall()), key=repr)
    return out


def changed_tables(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> dict[str, tuple[list[Any], list[Any]]]:
    diff = {}
    for name in before:
        if before[name] != after[name]:
            gone = [r for r in before[name] if r not in after[name]]
            new = [r for r in after[name] if r not in before[name]]
            diff[name] = (gone, new)
    return diff


@dataclass
class Outcome:
    """What one update did: the rows it queued, and what the renderer made of them."""

    rows: list[Outbox]
    rendered: list[tuple[str, str, str]]
    changes: dict[str, tuple[list[Any], list[Any]]]

    def to(self, chat_id: int) -> list[Outbox]:
        return [r for r in self.rows if r.chat_id == chat_id]

    def elsewhere(self, chat_id: int) -> list[Outbox]:
        return [r for r in self.rows if r.chat_id != chat_id]

    def template_of(self, row: Outbox) -> tuple[str, str]:
        """(template, locale) the row's text was rendered from."""
        text = row.payload.get("text", "")
        probe = text[:150].rstrip("…")
        for key, locale, rendered in reversed(self.rendered):
            if rendered.startswith(probe):
                return key, locale
        raise AssertionError(f"a reply no template rendered: {text[:300]!r}")


@asynccontextmanager
async def sandbox(world: World) -> AsyncIterator[None]:
    """Run the body against the world in a transaction that is rolled back afterwards."""
    services = world.services
    async with world.engine.connect() as conn:
        outer = await conn.begin()
        saved = services.sessionmaker
        services.sessionmaker = async_sessionmaker(
            bind=conn,
            expire_on_commit=False,
            autoflush=True,
            join_transaction_mode="create_savepoint",
        )
        try:
            yield
        finally:
            services.sessionmaker = saved
            await outer.rollback()


async def run_update(world: World, event: Event, *, compare: bool = True) -> Outcome:
    """Handle ``event`` in a sandbox; report the rows it queued and the tables it changed."""
    world.renderer.seen.clear()
    async with sandbox(world):
        await handle(world.services, event)
        async with world.services.uow() as uow:
            rows = list(
                await uow.session.scalars(
                    select(Outbox).where(Outbox.id > world.outbox_mark).order_by(Outbox.id)
                )
            )
        after = await snapshot_with(world.services) if compare else world.baseline
    return Outcome(rows, list(world.renderer.seen), changed_tables(world.baseline, after))


class Loop:
    """A private event loop for the synchronous hypothesis test bodies."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


def world_url(tmp: Path) -> str:
    return PG_URL or f"sqlite+aiosqlite:///{tmp}/fuzz.db"


def iter_actors(world: World, *roles: str) -> Iterator[Actor]:
    return (a for a in world.actors if not roles or a.role in roles)
