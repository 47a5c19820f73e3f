"""A job step writes the dispatch columns it changes with its own UPDATE, not by a flush.

The unit of work's flush of a changed dispatch costs about three times an UPDATE built once
(docs/PERFORMANCE.md); these tests pin that the job steps no longer flush the dispatch, and
that what they write is what the row and the object hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from bot.core.enums import DispatchStatus
from bot.db.models import Dispatch
from bot.flows.intake import create_dispatch
from bot.services import dispatches as svc
from tests.flows.test_job import (
    ENG,
    accepted_job,
    contact,
    dispatch_of,
    local,
    minute_of,
    on_site,
    report_until,
)
from tests.helpers import dispatch_fields, new_dispatch, press, say


@contextmanager
def flushed_dispatches() -> Iterator[list[set[str]]]:
    """The changed columns of each dispatch any flush wrote meanwhile."""
    seen: list[set[str]] = []

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        for obj in session.dirty:
            if isinstance(obj, Dispatch):
                changed = {a.key for a in inspect(obj).attrs if a.history.has_changes()}
                if changed:
                    seen.append(changed)

    event.listen(Session, "before_flush", before_flush)
    try:
        yield seen
    finally:
        event.remove(Session, "before_flush", before_flush)


async def test_job_steps_write_the_dispatch_without_a_flush(services, clock) -> None:
    job = await accepted_job(services)
    with flushed_dispatches() as flushed:
        await contact(services, job, local(12))  # eta and contacted_at, with the status
        clock.set(local(10, 40))
        await press(services, ENG, f"job:{job.id}:way")
        await press(services, ENG, f"job:{job.id}:omw:{minute_of(local(11, 30))}")
    assert flushed == []
    dispatch = await dispatch_of(services, job)
    assert dispatch.status == DispatchStatus.EN_ROUTE
    assert dispatch.contacted_at is not None
    assert dispatch.eta == local(11, 30)


async def test_the_report_draft_is_written_step_by_step(services, clock) -> None:
    job = await on_site(services, clock)
    with flushed_dispatches() as flushed:
        await report_until(services, job, "parts")
        await say(services, ENG, "Relay x 2")
    assert flushed == []
    dispatch = await dispatch_of(services, job)
    draft = dispatch.report["draft"]
    assert draft["outcome"] == "fixed"
    assert draft["work_done"] == "Replaced the compressor relay"
    assert dispatch.report["step"] == "photos"


async def test_write_sets_the_row_and_the_object_and_leaves_nothing_to_flush(services) -> None:
    created = await new_dispatch(services)
    at = local(12)
    async with services.uow() as uow:
        dispatch = await svc.get_dispatch(uow, created.id)
        assert dispatch is not None
        await svc.write(uow, dispatch, eta=at, arrival={"late": True})
        assert dispatch.eta == at and dispatch.arrival == {"late": True}
        assert not uow.session.dirty  # the object holds what the row holds
        await uow.commit()
    row = await dispatch_of(services, created.id)
    assert row.eta == at and row.arrival == {"late": True}


async def test_a_dispatch_created_in_the_same_unit_of_work_gets_the_values_by_its_insert(
    services,
) -> None:
    async with services.uow() as uow:
        dispatch = await create_dispatch(uow, dispatch_fields(services), source="api")
        await svc.write(uow, dispatch, description="Bring a ladder")
        await uow.commit()
        number = dispatch.id
    assert (await dispatch_of(services, number)).description == "Bring a ladder"
