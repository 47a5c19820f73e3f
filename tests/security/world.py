"""A small world for the authorisation tests, built once through the real handler and then
restored from a snapshot of every table before each check (fast on SQLite and PostgreSQL).

Personas (DOMAIN.md §7): ``eng`` the engineer of the job, ``eng2`` another engineer (with a
job of his own), ``cust`` the customer of the job, ``cust2`` another customer (with a job of
her own), ``sup`` a supervisor, ``sup2`` a second supervisor (the other side of a handover),
``stranger`` an unregistered Telegram user.

Stages are states of that world in which a given button acts for the rightful persona; each
stage is built from its parent by driving the bot the way users would, and cached.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from bot.core.events import Kind
from bot.core.messages import CallbackAnswer, Msg
from bot.db.models import Base, Dispatch, Offer
from bot.db.models.complaints import Complaint
from bot.db.models.customer import SignOff
from bot.db.models.followups import FollowUp
from bot.db.models.supervision import Handover, MajorFault
from bot.flows.followups import december_outreach
from bot.handlers import router
from bot.scheduler.sweep import sweep
from bot.services.context import Services
from bot.services.customers import customer_link
from bot.services.errors import DomainError
from bot.services.outbox import OutboxWriter
from tests.helpers import dispatch_fields, new_dispatch, new_staff, press, say, send_kind

PERSONAS = ("eng", "eng2", "cust", "cust2", "sup", "sup2", "stranger")
TG = {
    "eng": 11,
    "eng2": 12,
    "sup": 21,
    "sup2": 22,
    "cust": 7001,
    "cust2": 7002,
    "stranger": 9001,
}
PHONE1, PHONE2 = "+86 138 0013 8000", "+86 139 1111 2222"
ADDRESS1, ADDRESS2 = "88 Century Avenue, Pudong", "9 Secret Road, Xuhui"
CONTACT1, CONTACT2 = "Li Na", "Zhao Lei"
COMPANY1, COMPANY2 = "Acme Foods", "Globex Cold Chain"
# What no refusal may reveal (DOMAIN.md §7): the jobs' customer data in any common form.
SECRETS = (
    PHONE1,
    "8613800138000",
    "13800138000",
    "138 0013 8000",
    PHONE2,
    "8613911112222",
    "13911112222",
    "139 1111 2222",
    "Century Avenue",
    "Secret Road",
    CONTACT1,
    CONTACT2,
    COMPANY1,
    COMPANY2,
)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, hour, minute, tzinfo=SHANGHAI)


def minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


# ---- what the bot said: template keys, recorded at the outbox ---------------------------------


@dataclass
class Said:
    template: str
    user_id: int | None
    chat_id: int | None
    answer: bool = False


@dataclass
class Recorder:
    said: list[Said] = field(default_factory=list)

    def install(self, monkeypatch: Any) -> None:
        send, answer = OutboxWriter.send, OutboxWriter.answer
        recorder = self

        async def recording_send(writer: OutboxWriter, msg: Msg) -> bool:
            recorder.said.append(Said(msg.template, msg.user_id, msg.chat_id))
            return await send(writer, msg)

        async def recording_answer(
            writer: OutboxWriter, ans: CallbackAnswer, locale: str, chat_id: int
        ) -> None:
            recorder.said.append(Said(ans.template, None, chat_id, answer=True))
            await answer(writer, ans, locale, chat_id)

        route = router.route

        async def recording_route(ctx: Any) -> None:
            start = len(recorder.said)
            try:
                await route(ctx)
            except DomainError:
                del recorder.said[start:]  # rolled back with the handler's savepoint
                raise

        monkeypatch.setattr(OutboxWriter, "send", recording_send)
        monkeypatch.setattr(OutboxWriter, "answer", recording_answer)
        monkeypatch.setattr(router, "route", recording_route)

    def mark(self) -> int:
        return len(self.said)

    def since(self, mark: int) -> list[Said]:
        return self.said[mark:]


# ---- snapshots of every table ---------------------------------------------------------------
# SQLite: the database file is read and copied directly (sqlite3's backup API, in memory).
# PostgreSQL: one query reads every table as JSON; one statement puts them all back.

TABLES = Base.metadata.sorted_tables
Saved = sqlite3.Connection | dict[str, str]


def sqlite_file(services: Services) -> str | None:
    url = services.sessionmaker.kw["bind"].url
    return str(url.database) if url.get_backend_name() == "sqlite" else None


def _order(table: Any, alias: str = "") -> str:
    return ", ".join(f'{alias}"{c.name}"' for c in table.primary_key.columns)


async def _pg_tables(services: Services, tables: list[Any]) -> dict[str, str]:
    columns = ", ".join(
        f"(SELECT coalesce(json_agg(x ORDER BY {_order(t, 'x.')}), '[]')::text "
        f'FROM "{t.name}" x) AS "{t.name}"'
        for t in tables
    )
    async with services.sessionmaker.kw["bind"].connect() as conn:
        row = (await conn.execute(text(f"SELECT {columns}"))).one()
    return dict(zip([t.name for t in tables], row, strict=True))


async def state(services: Services, *, skip: tuple[str, ...] = ("inbox", "outbox")) -> Any:
    """Every row of every table (but ``skip``), for comparing before and after."""
    tables = [t for t in TABLES if t.name not in skip]
    path = sqlite_file(services)
    if path is None:
        return await _pg_tables(services, tables)
    with closing(sqlite3.connect(path)) as conn:
        return {
            t.name: conn.execute(f'SELECT * FROM "{t.name}" ORDER BY {_order(t)}').fetchall()
            for t in tables
        }


async def save(services: Services) -> Saved:
    path = sqlite_file(services)
    if path is None:
        return await _pg_tables(services, list(TABLES))
    copy = sqlite3.connect(":memory:", check_same_thread=False)
    with closing(sqlite3.connect(path)) as conn:
        conn.backup(copy)
    return copy


async def load(services: Services, saved: Saved) -> None:
    """Every table exactly as saved (on PostgreSQL the id sequences moved past the ids)."""
    path = sqlite_file(services)
    if path is not None:
        assert isinstance(saved, sqlite3.Connection)
        with closing(sqlite3.connect(path)) as conn:
            saved.backup(conn)
        return
    assert isinstance(saved, dict)
    full = [t for t in TABLES if saved[t.name] != "[]"]
    inserts = ", ".join(
        f'i{n} AS (INSERT INTO "{t.name}" SELECT * FROM '
        f'json_populate_recordset(NULL::"{t.name}", CAST(:t{n} AS json)))'
        for n, t in enumerate(full)
    )
    setvals = ", ".join(
        f"setval(pg_get_serial_sequence('\"{t.name}\"', 'id'), (SELECT max(id) FROM \"{t.name}\"))"
        for t in full
        if "id" in t.c and t.c.id.autoincrement in (True, "auto")
    )
    async with services.sessionmaker.kw["bind"].begin() as conn:
        # DELETE, not TRUNCATE: much faster on small tables (checked at the statement's end).
        deletes = ", ".join(f'd{n} AS (DELETE FROM "{t.name}")' for n, t in enumerate(TABLES))
        await conn.execute(text(f"WITH {deletes} SELECT 1"))
        if full:
            params = {f"t{n}": saved[t.name] for n, t in enumerate(full)}
            await conn.execute(text(f"WITH {inserts} SELECT 1"), params)
        if setvals:
            await conn.execute(text(f"SELECT {setvals}"))


# ---- the world ------------------------------------------------------------------------------


@dataclass
class World:
    uid: dict[str, int] = field(default_factory=dict)  # persona -> users.id
    ids: dict[str, int] = field(default_factory=dict)  # named objects -> their id
    codes: dict[str, str] = field(default_factory=dict)  # named deep-link codes


@dataclass
class Stage:
    saved: Saved
    now: datetime
    world: World


StageBuilder = Callable[[Services, World], Awaitable[None]]
STAGES: dict[str, tuple[str | None, StageBuilder]] = {}
_CACHE: dict[tuple[str, str], Stage] = {}


def stage(name: str, parent: str | None) -> Callable[[StageBuilder], StageBuilder]:
    def register(builder: StageBuilder) -> StageBuilder:
        STAGES[name] = (parent, builder)
        return builder

    return register


async def enter(services: Services, name: str) -> World:
    """Put the database and the clock in stage ``name`` and return its world."""
    key = ("sqlite" if sqlite_file(services) else "postgresql", name)
    cached = _CACHE.get(key)
    if cached is None:
        parent, builder = STAGES[name]
        world = await enter(services, parent) if parent else World()
        world = World(dict(world.uid), dict(world.ids), dict(world.codes))
        await builder(services, world)
        cached = Stage(await save(services), services.clock.now(), world)
        _CACHE[key] = cached
    else:
        await load(services, cached.saved)
    services.clock.set(cached.now)  # type: ignore[attr-defined]
    return World(dict(cached.world.uid), dict(cached.world.ids), dict(cached.world.codes))


async def scalar(services: Services, stmt: Any) -> Any:
    async with services.uow() as uow:
        return await uow.session.scalar(stmt)


async def _onboard(services: Services, world: World, persona: str, role: str, name: str) -> None:
    new = await new_staff(services, role, name, ("repair",) if role == "engineer" else ())
    await say(services, TG[persona], f"/start {new.code}")
    world.uid[persona] = new.user.id


@stage("base", None)
async def _base(services: Services, world: World) -> None:
    """Staff onboarded; job 1 offered to eng (customer cust), job 2 accepted by eng2 (cust2)."""
    await _onboard(services, world, "eng", "engineer", "Wang Wei")
    await _onboard(services, world, "eng2", "engineer", "Chen Jie")
    await _onboard(services, world, "sup", "supervisor", "Zhou Min")
    await _onboard(services, world, "sup2", "supervisor", "Sun Li")
    j1 = await new_dispatch(
        services,
        customer=COMPANY1,
        contact_name=CONTACT1,
        contact_phone=PHONE1,
        address=ADDRESS1,
        engineer="E0001",
    )
    j2 = await new_dispatch(
        services,
        customer=COMPANY2,
        contact_name=CONTACT2,
        contact_phone=PHONE2,
        address=ADDRESS2,
        engineer="E0002",
    )
    world.ids.update(j1=j1.id, j2=j2.id)
    for persona, phone in (("cust", "8613800138000"), ("cust2", "8613911112222")):
        await send_kind(
            services,
            TG[persona],
            Kind.CONTACT,
            contact_phone=phone,
            contact_user_id=TG[persona],
            first_name=persona,
            language="en",
        )
        world.uid[persona] = int(
            await scalar(services, select(Dispatch.customer_user_id).where(Dispatch.id == j1.id))
            if persona == "cust"
            else await scalar(
                services, select(Dispatch.customer_user_id).where(Dispatch.id == j2.id)
            )
        )
    for name, job in (("offer1", j1.id), ("offer2", j2.id)):
        world.ids[name] = int(
            await scalar(services, select(Offer.id).where(Offer.dispatch_id == job))
        )
    await press(services, TG["eng2"], f"off:{world.ids['offer2']}:acc")


async def _id(services: Services, stmt: Any) -> int:
    found = await scalar(services, stmt)
    assert found is not None, stmt
    return int(found)


def _job(world: World, action: str, arg: str | int = "") -> str:
    return f"job:{world.ids['j1']}:{action}" + (f":{arg}" if arg != "" else "")


async def _eng(services: Services, data: str) -> None:
    await press(services, TG["eng"], data)


# ---- the engineer's job, step by step --------------------------------------------------------


@stage("accepted", "base")
async def _accepted(services: Services, world: World) -> None:
    await _eng(services, f"off:{world.ids['offer1']}:acc")


@stage("contact_overdue", "accepted")
async def _contact_overdue(services: Services, world: World) -> None:
    services.clock.advance(timedelta(minutes=16))  # type: ignore[attr-defined]
    await sweep(services)


@stage("contacted", "accepted")
async def _contacted(services: Services, world: World) -> None:
    await _eng(services, _job(world, "ctd"))


@stage("eta", "contacted")
async def _eta(services: Services, world: World) -> None:
    await _eng(services, _job(world, "eta", minute(local(11, 30))))


@stage("late", "eta")
async def _late(services: Services, world: World) -> None:
    services.clock.set(local(14, 5))  # type: ignore[attr-defined]
    await sweep(services)


@stage("on_way", "eta")
async def _on_way(services: Services, world: World) -> None:
    await _eng(services, _job(world, "way"))


@stage("arrived", "on_way")
async def _arrived(services: Services, world: World) -> None:
    services.clock.set(local(11, 10))  # type: ignore[attr-defined]
    await send_kind(services, TG["eng"], Kind.LOCATION, latitude=31.2310, longitude=121.4740)


@stage("arrived_live", "on_way")
async def _arrived_live(services: Services, world: World) -> None:
    """Checked in automatically by the live location (which the engineer may undo)."""
    services.clock.set(local(11, 10))  # type: ignore[attr-defined]
    await send_kind(
        services, TG["eng"], Kind.LOCATION, latitude=31.2310, longitude=121.4740, live=True
    )


@stage("parts", "arrived")
async def _parts(services: Services, world: World) -> None:
    await _eng(services, _job(world, "out", "fixed"))
    await say(services, TG["eng"], "Replaced the compressor relay")


@stage("photos", "parts")
async def _photos(services: Services, world: World) -> None:
    await say(services, TG["eng"], "Relay x 2")
    await send_kind(services, TG["eng"], Kind.PHOTO, file_ids=("photo-1",))


@stage("extra", "photos")
async def _extra(services: Services, world: World) -> None:
    await _eng(services, _job(world, "phd"))


@stage("review", "extra")
async def _review(services: Services, world: World) -> None:
    await _eng(services, _job(world, "noex"))


@stage("awaiting_signoff", "review")
async def _awaiting(services: Services, world: World) -> None:
    await _eng(services, _job(world, "sub"))
    world.ids["signoff"] = await _id(
        services, select(SignOff.id).where(SignOff.dispatch_id == world.ids["j1"])
    )


@stage("signoff_overdue", "awaiting_signoff")
async def _signoff_overdue(services: Services, world: World) -> None:
    services.clock.advance(services.settings.signoff_escalation)  # type: ignore[attr-defined]
    await sweep(services)


@stage("signed", "awaiting_signoff")
async def _signed(services: Services, world: World) -> None:
    await press(services, TG["cust"], f"so:{world.ids['signoff']}:ok")


@stage("rated", "signed")
async def _rated(services: Services, world: World) -> None:
    await press(services, TG["cust"], f"fb:{world.ids['j1']}:r:5")


@stage("followup", "rated")
async def _followup(services: Services, world: World) -> None:
    services.clock.advance(services.settings.followup_delay + timedelta(minutes=1))  # type: ignore[attr-defined]
    await sweep(services)
    world.ids["followup"] = await _id(
        services, select(FollowUp.id).where(FollowUp.dispatch_id == world.ids["j1"])
    )


@stage("outreach", "base")
async def _outreach(services: Services, world: World) -> None:
    async with services.uow() as uow:
        await december_outreach(uow, services.clock.now())
        await uow.commit()
    for name, job in (("followup", "j1"), ("followup2", "j2")):
        world.ids[name] = await _id(
            services, select(FollowUp.id).where(FollowUp.dispatch_id == world.ids[job])
        )


@stage("unassigned", "base")
async def _unassigned(services: Services, world: World) -> None:
    """A job nobody is qualified for: the supervisor is asked to assign it by hand."""
    job = await new_dispatch(
        services,
        customer=COMPANY1,
        contact_name=CONTACT1,
        contact_phone=PHONE1,
        address=ADDRESS1,
        service_type="installation",
    )
    world.ids["j3"] = job.id


# ---- a complaint by the customer of the job, about the job ----------------------------------


def _cmi(world: World, action: str, arg: str | int = "") -> str:
    return f"cmi:{world.uid['cust']}:{action}" + (f":{arg}" if arg != "" else "")


def _cmp(world: World, action: str, arg: str | int = "") -> str:
    return f"cmp:{world.ids['complaint']}:{action}" + (f":{arg}" if arg != "" else "")


@stage("intake", "accepted")
async def _intake(services: Services, world: World) -> None:
    await say(services, TG["cust"], "/complaint")


@stage("intake_job", "intake")
async def _intake_job(services: Services, world: World) -> None:
    await press(services, TG["cust"], _cmi(world, "cat", "service_attitude"))


@stage("intake_described", "intake_job")
async def _intake_described(services: Services, world: World) -> None:
    await press(services, TG["cust"], _cmi(world, "job", world.ids["j1"]))
    await say(services, TG["cust"], "The engineer was rude on the phone")
    world.ids["complaint"] = await _id(services, select(Complaint.id))


@stage("complaint", "intake_described")
async def _complaint(services: Services, world: World) -> None:
    await press(services, TG["cust"], _cmi(world, "done"))


@stage("complaint_owned", "complaint")
async def _complaint_owned(services: Services, world: World) -> None:
    await press(services, TG["sup"], _cmp(world, "take"))


@stage("complaint_xfer", "complaint_owned")
async def _complaint_xfer(services: Services, world: World) -> None:
    await press(services, TG["sup"], _cmp(world, "xfer"))


@stage("complaint_worker", "complaint_xfer")
async def _complaint_worker(services: Services, world: World) -> None:
    await press(services, TG["sup"], _cmp(world, "xto", world.uid["eng2"]))
    await say(services, TG["sup"], "Please check the relay stock")


@stage("complaint_solution", "complaint_owned")
async def _complaint_solution(services: Services, world: World) -> None:
    await press(services, TG["sup"], _cmp(world, "res"))
    await say(services, TG["sup"], "We replace the relay free of charge")


@stage("complaint_resolved", "complaint_solution")
async def _complaint_resolved(services: Services, world: World) -> None:
    await press(services, TG["sup"], _cmp(world, "when", 1))


@stage("complaint_callback", "complaint_resolved")
async def _complaint_callback(services: Services, world: World) -> None:
    services.clock.advance(timedelta(days=2))  # type: ignore[attr-defined]
    await sweep(services)


@stage("complaint_closed", "complaint_callback")
async def _complaint_closed(services: Services, world: World) -> None:
    await press(services, TG["cust"], _cmp(world, "ok"))


# ---- a major fault, a handover ---------------------------------------------------------------


@stage("fault_report", "base")
async def _fault_report(services: Services, world: World) -> None:
    await say(services, TG["sup"], "/fault new")


@stage("fault_customer", "fault_report")
async def _fault_customer(services: Services, world: World) -> None:
    await press(services, TG["sup"], "fltn:0:now")
    for answer in ("Plant 2, line 3", "Chillers down", "Engineer on the way"):
        await say(services, TG["sup"], answer)
    world.ids["customer1"] = await _id(
        services, select(Dispatch.customer_id).where(Dispatch.id == world.ids["j1"])
    )


@stage("fault_open", "fault_customer")
async def _fault_open(services: Services, world: World) -> None:
    await press(services, TG["sup"], "fltn:0:nocust")
    world.ids["fault"] = await _id(services, select(MajorFault.id))


@stage("fault_confirm", "fault_open")
async def _fault_confirm(services: Services, world: World) -> None:
    await press(services, TG["sup"], f"flt:{world.ids['fault']}:close")
    for answer in ("Two hours down", "Relay replaced", "Worn relay", "New relays", "Checks"):
        await say(services, TG["sup"], answer)


@stage("handover", "base")
async def _handover(services: Services, world: World) -> None:
    await say(services, TG["sup"], "/handover")
    world.ids["handover"] = await _id(services, select(Handover.id))


@stage("handover_to", "handover")
async def _handover_to(services: Services, world: World) -> None:
    await press(services, TG["sup"], f"hov:{world.ids['handover']}:nonotes")


@stage("handover_confirm", "handover_to")
async def _handover_confirm(services: Services, world: World) -> None:
    await press(services, TG["sup"], f"hov:{world.ids['handover']}:to:{world.uid['sup2']}")


__all__ = [
    "ADDRESS1",
    "PERSONAS",
    "SECRETS",
    "TG",
    "Complaint",
    "FollowUp",
    "Handover",
    "MajorFault",
    "Recorder",
    "SignOff",
    "World",
    "customer_link",
    "december_outreach",
    "dispatch_fields",
    "enter",
    "load",
    "local",
    "minute",
    "save",
    "sweep",
    "timedelta",
]
