"""Dispatch persistence: creation from validated intake, lookups, history and status changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, func, insert, inspect, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from bot.core.enums import HELD_DISPATCH_STATUSES, DispatchStatus, Role
from bot.db.models import Customer, Dispatch, DispatchEvent, Equipment, Site, User
from bot.services.errors import FieldError
from bot.services.intake import CleanDispatch
from bot.services.uow import UnitOfWork

_ADD_EVENT = insert(cast(Table, DispatchEvent.__table__))
_DISPATCHES = cast(Table, Dispatch.__table__)
_WRITES: dict[tuple[str, ...], Update] = {}  # one UPDATE per set of columns, built once

# One transition table for the dispatch status machine.
TRANSITIONS: dict[DispatchStatus, frozenset[DispatchStatus]] = {
    DispatchStatus.NEW: frozenset(
        {DispatchStatus.OFFERED, DispatchStatus.UNASSIGNED, DispatchStatus.CANCELLED}
    ),
    DispatchStatus.OFFERED: frozenset(
        {
            DispatchStatus.OFFERED,
            DispatchStatus.ACCEPTED,
            DispatchStatus.UNASSIGNED,
            DispatchStatus.CANCELLED,
        }
    ),
    DispatchStatus.UNASSIGNED: frozenset({DispatchStatus.OFFERED, DispatchStatus.CANCELLED}),
    DispatchStatus.ACCEPTED: frozenset(
        {DispatchStatus.CONTACTED, DispatchStatus.UNASSIGNED, DispatchStatus.CANCELLED}
    ),
    DispatchStatus.CONTACTED: frozenset(
        {
            DispatchStatus.EN_ROUTE,
            DispatchStatus.ON_SITE,
            DispatchStatus.UNASSIGNED,
            DispatchStatus.CANCELLED,
        }
    ),
    DispatchStatus.EN_ROUTE: frozenset(
        {
            DispatchStatus.EN_ROUTE,
            DispatchStatus.ON_SITE,
            DispatchStatus.UNASSIGNED,
            DispatchStatus.CANCELLED,
        }
    ),
    DispatchStatus.ON_SITE: frozenset(
        {
            DispatchStatus.AWAITING_SIGNOFF,
            DispatchStatus.EN_ROUTE,
            DispatchStatus.CONTACTED,
            DispatchStatus.CANCELLED,
        }
    ),
    DispatchStatus.AWAITING_SIGNOFF: frozenset({DispatchStatus.SIGNED_OFF}),
    DispatchStatus.SIGNED_OFF: frozenset({DispatchStatus.CLOSED}),
    DispatchStatus.CLOSED: frozenset(),
    DispatchStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def subject(dispatch_id: int) -> str:
    """The timer subject of a dispatch."""
    return f"dispatch:{dispatch_id}"


async def write(uow: UnitOfWork, dispatch: Dispatch, **values: Any) -> None:
    """Set these columns of the dispatch, in the row at once and on the object.

    A job step changes a column or two of the dispatch it holds; one UPDATE built once per set
    of columns costs about a third of the unit of work's flush of the changed object (which
    works out what changed, orders and batches it). A dispatch created in this unit of work
    is simply given the values: its INSERT carries them."""
    if not values:
        return
    if not inspect(dispatch).persistent:
        for key, value in values.items():
            setattr(dispatch, key, value)
        return
    keys = tuple(sorted(values))
    statement = _WRITES.get(keys)
    if statement is None:
        statement = _WRITES[keys] = (
            update(_DISPATCHES)
            .where(_DISPATCHES.c.id == bindparam("b_id"))
            .values({key: bindparam(f"b_{key}", type_=_DISPATCHES.c[key].type) for key in keys})
        )
    params = {f"b_{key}": value for key, value in values.items()}
    await uow.session.execute(statement, {"b_id": dispatch.id, **params})
    for key, value in values.items():
        set_committed_value(dispatch, key, value)  # what the row now holds: nothing to flush


async def record(
    uow: UnitOfWork,
    dispatch: Dispatch,
    kind: str,
    *,
    actor: User | None = None,
    to_status: DispatchStatus | None = None,
    changes: dict[str, Any] | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    **data: Any,
) -> None:
    """Append to the dispatch's history and, with ``to_status``, move it (checked); the
    other columns in ``changes`` are written with the status, in the same UPDATE.

    The history row is a plain insert built once (most job steps add one)."""
    from_status = dispatch.status
    values = dict(changes or {})
    if to_status is not None:
        allowed = TRANSITIONS[DispatchStatus(from_status)]
        if to_status not in allowed:
            raise IllegalTransition(f"{from_status} -> {to_status}")
        values["status"] = to_status.value
    await write(uow, dispatch, **values)
    if dispatch.id is None:
        await uow.session.flush()  # a dispatch created in this unit of work gets its id
    await uow.session.execute(
        _ADD_EVENT,
        {
            "dispatch_id": dispatch.id,
            "at": uow.clock.now(),
            "actor_id": actor.id if actor else None,
            "kind": kind,
            "from_status": from_status,
            "to_status": to_status.value if to_status else None,
            "latitude": latitude,
            "longitude": longitude,
            "data": data,
        },
    )


async def find_engineer(uow: UnitOfWork, staff_no: str) -> User | None:
    return await uow.session.scalar(
        select(User).where(
            func.upper(User.staff_no) == staff_no.strip().upper(),
            User.role == Role.ENGINEER.value,
            User.active.is_(True),
        )
    )


async def existing_import(uow: UnitOfWork, key: str) -> Dispatch | None:
    return await uow.session.scalar(select(Dispatch).where(Dispatch.import_key == key))


async def create_dispatch(
    uow: UnitOfWork,
    clean: CleanDispatch,
    *,
    source: str,
    created_by: User | None = None,
    import_key: str | None = None,
) -> Dispatch:
    """Store a validated dispatch (customer, site and equipment found or created)."""
    data = clean.data
    engineer = None
    if data.engineer:
        engineer = await find_engineer(uow, data.engineer)
        if engineer is None:
            raise FieldError(
                [("engineer", f"no active engineer with staff number {data.engineer!r}")]
            )
    now = uow.clock.now()
    customer = await uow.session.scalar(
        select(Customer).where(func.lower(Customer.name) == data.customer.lower())
    )
    if customer is None:
        customer = Customer(name=data.customer, created_at=now)
        uow.session.add(customer)
        await uow.session.flush()
    site = await uow.session.scalar(
        select(Site).where(Site.customer_id == customer.id, Site.address == data.address)
    )
    if site is None:
        site = Site(customer_id=customer.id, address=data.address)
        uow.session.add(site)
    if data.latitude is not None and data.longitude is not None:
        site.latitude, site.longitude = data.latitude, data.longitude
    await uow.session.flush()
    for serial in data.serials:
        known = await uow.session.scalar(
            select(Equipment).where(
                Equipment.model == data.equipment_model, Equipment.serial == serial
            )
        )
        if known is None:
            uow.session.add(Equipment(site_id=site.id, model=data.equipment_model, serial=serial))
    dispatch = Dispatch(
        number="",
        customer_id=customer.id,
        site_id=site.id,
        contact_name=data.contact_name,
        contact_phone=clean.contact_phone,
        equipment_model=data.equipment_model,
        quantity=data.quantity,
        serials=list(data.serials),
        service_type=data.service_type.value,
        description=data.description,
        window_start=clean.window_start,
        window_end=clean.window_end,
        status=DispatchStatus.NEW.value,
        requested_engineer_id=engineer.id if engineer else None,
        source=source,
        import_key=import_key,
        arrival={},
        report={},
        created_at=now,
        created_by=created_by.id if created_by else None,
    )
    uow.session.add(dispatch)
    await uow.session.flush()
    dispatch.number = job_number(dispatch.id)
    await record(uow, dispatch, "created", actor=created_by, source=source)
    return dispatch


def job_number(dispatch_id: int) -> str:
    return f"FB{dispatch_id:06d}"


async def create_linked_dispatch(
    uow: UnitOfWork,
    parent: Dispatch,
    *,
    window_start: datetime,
    source: str,
    service_type: str | None = None,
    description: str | None = None,
    requested_engineer_id: int | None = None,
    customer_user_id: int | None = None,
    created_by: int | None = None,
) -> Dispatch:
    """A new job for the same customer, site and equipment as ``parent``, linked to it.

    The window keeps the parent's length; the history of both jobs records the link.
    """
    child = Dispatch(
        number="",
        customer_id=parent.customer_id,
        site_id=parent.site_id,
        contact_name=parent.contact_name,
        contact_phone=parent.contact_phone,
        equipment_model=parent.equipment_model,
        quantity=parent.quantity,
        serials=list(parent.serials),
        service_type=service_type or parent.service_type,
        description=description,
        window_start=window_start,
        window_end=window_start + (parent.window_end - parent.window_start),
        status=DispatchStatus.NEW.value,
        requested_engineer_id=requested_engineer_id,
        customer_user_id=customer_user_id,
        parent_id=parent.id,
        source=source,
        arrival={},
        report={},
        created_at=uow.clock.now(),
        created_by=created_by,
    )
    uow.session.add(child)
    await uow.session.flush()
    child.number = job_number(child.id)
    return child


# Built once: a job step loads its dispatch on every update.
_DISPATCH = (
    select(Dispatch, Site, Customer)
    .join(Site, Site.id == Dispatch.site_id)
    .join(Customer, Customer.id == Dispatch.customer_id)
    .where(Dispatch.id == bindparam("dispatch_id"))
)
_DISPATCH_LOCKED = _DISPATCH.with_for_update(of=Dispatch)


async def get_dispatch(uow: UnitOfWork, dispatch_id: int, *, lock: bool = False) -> Dispatch | None:
    """The dispatch; its site and customer come in the same query (most steps need them, and
    ``site_of``/``customer_of`` then find them in the session without a query of their own).

    A dispatch this unit of work already holds is returned as it is, without a query (a
    query would return that same object anyway: the session never reloads one it holds).
    """
    session = uow.session
    if not lock:
        held = session.identity_map.get(identity_key(Dispatch, dispatch_id))
        if held is not None and not inspect(held).expired_attributes:
            return held
    stmt = _DISPATCH_LOCKED if lock else _DISPATCH
    row = (await session.execute(stmt, {"dispatch_id": dispatch_id})).first()
    if row is None:
        return None
    # The session keeps objects only while something refers to them: hold the site and
    # customer for as long as the unit of work lasts, so site_of/customer_of find them.
    session.info.setdefault("held", []).extend(row[1:])
    return row[0]


async def site_of(uow: UnitOfWork, dispatch: Dispatch) -> Site:
    site = await uow.session.get(Site, dispatch.site_id)
    assert site is not None
    return site


async def customer_of(uow: UnitOfWork, dispatch: Dispatch) -> Customer:
    customer = await uow.session.get(Customer, dispatch.customer_id)
    assert customer is not None
    return customer


async def open_jobs_of(uow: UnitOfWork, engineer_id: int) -> list[Dispatch]:
    rows = await uow.session.scalars(
        select(Dispatch)
        .where(
            Dispatch.engineer_id == engineer_id,
            Dispatch.status.in_([s.value for s in HELD_DISPATCH_STATUSES]),
        )
        .order_by(Dispatch.window_start)
    )
    return list(rows)


async def history(uow: UnitOfWork, dispatch_id: int) -> list[DispatchEvent]:
    rows = await uow.session.scalars(
        select(DispatchEvent)
        .where(DispatchEvent.dispatch_id == dispatch_id)
        .order_by(DispatchEvent.id)
    )
    return list(rows)


def site_timezone(site: Site, default: str) -> str:
    return site.timezone or default


def in_window(dispatch: Dispatch, at: datetime) -> bool:
    return dispatch.window_start <= at <= dispatch.window_end
