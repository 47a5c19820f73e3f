"""Issue 6 end to end (both runtimes, real HTTP against the fake Bot API): a weekly report on
demand with its CSV attachment, and a shift handover confirmed by the incoming supervisor."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import select

from bot.db.models import Customer, Dispatch, Site
from bot.db.models.supervision import Handover
from bot.flows import reports
from tests.e2e.conftest import Harness
from tests.e2e.test_engineer_job import join


async def seed_job(harness: Harness) -> None:
    """One job of this week, done on time (inserted directly: its window may be past)."""
    assert harness.bot is not None
    services = harness.bot.services
    async with services.uow() as uow:
        now = uow.clock.now()
        week = reports.default_period("weekly", now, services.settings.timezone)
        customer = Customer(name="Acme Foods", created_at=now)
        uow.session.add(customer)
        await uow.session.flush()
        site = Site(customer_id=customer.id, address="88 Century Avenue")
        uow.session.add(site)
        await uow.session.flush()
        start = week.start + timedelta(hours=9)
        uow.session.add(
            Dispatch(
                number="FB000001",
                customer_id=customer.id,
                site_id=site.id,
                contact_name="Li Na",
                contact_phone="+8613800138000",
                equipment_model="CH-200",
                quantity=1,
                serials=[],
                service_type="repair",
                window_start=start,
                window_end=start + timedelta(hours=3),
                status="closed",
                source="api",
                arrival={"in_window": True},
                arrived_at=start + timedelta(hours=1),
                report={},
                reported_at=start + timedelta(hours=2),
                created_at=now,
            )
        )
        await uow.commit()


async def test_a_weekly_report_on_demand_arrives_with_its_csv(harness: Harness) -> None:
    tg = harness.tg
    await harness.start()
    boss = await join(harness, "Zhou Min", "supervisor", ())
    engineer = await join(harness, "Wang Wei")
    await seed_job(harness)

    await engineer.send("/report weekly")
    await tg.wait_for(engineer.id, "not available to you")

    await boss.send("/report")
    choose = await tg.wait_for(boss.id, "Which report?")
    await boss.press("Weekly", choose)
    report = await tg.wait_for(boss.id, "Weekly report")
    assert "Jobs: 1 (work done 1, still open 0, cancelled 0)" in report["text"]
    assert "On-time arrival rate: 100% (1 of 1 arrivals)" in report["text"]
    document = await tg.wait_for(boss.id, lambda m: "document" in m)
    assert document["caption"].startswith("CSV: weekly report ")
    assert document["document"]["file_name"].startswith("fieldbot-weekly-")
    data = tg.file_bytes(document["document"]["file_id"]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data)))
    assert rows[0][:3] == ["Engineer", "Staff ID", "Jobs"]
    assert rows[-1][:3] == ["Total", "", "1"]
    await tg.wait_idle()
    assert not tg.internal_errors


async def test_a_shift_handover_over_real_http(harness: Harness) -> None:
    tg = harness.tg
    await harness.start()
    zhou = await join(harness, "Zhou Min", "supervisor", ())
    qian = await join(harness, "Qian Hui", "supervisor", ())

    await zhou.send("/handover")
    await tg.wait_for(zhou.id, "Type your notes")
    await zhou.send("Acme's chiller: call them back at 10:00")
    await tg.wait_for(zhou.id, "Who takes over?")
    await zhou.press("Hand over to Qian Hui")
    await tg.wait_for(zhou.id, "Handover sent to Qian Hui")
    request = await tg.wait_for(qian.id, "hands the shift over to you")
    assert "Acme's chiller: call them back at 10:00" in request["text"]
    await qian.press("✅ I take over the shift", request)
    await tg.wait_for(qian.id, "You are on duty")
    await tg.wait_for(zhou.id, "Qian Hui confirmed your handover")
    await tg.wait_idle()

    assert harness.bot is not None
    async with harness.bot.services.uow() as uow:
        [handover] = list(await uow.session.scalars(select(Handover)))
    assert handover.status == "confirmed"
    assert handover.notes == "Acme's chiller: call them back at 10:00"
    assert handover.submitted_at is not None and handover.confirmed_at is not None
    assert not tg.internal_errors
