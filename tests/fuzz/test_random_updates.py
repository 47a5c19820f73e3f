"""Property-based: any update, from anyone, at any step — no crash, no change it isn't due."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.bootstrap import build_services
from bot.core.clock import FakeClock
from bot.core.events import Event, Kind
from bot.db.models import Dispatch, Offer
from bot.handlers.router import handle
from tests.conftest import reset_database
from tests.helpers import new_dispatch, onboard, press

ENGINEER, OTHER, SUPERVISOR, STRANGER = 11, 12, 21, 99
_ids = itertools.count(500_000)

nasty_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=300),
    st.sampled_from(
        [
            "",
            " ",
            "\x00\x01\x1b[31m",
            "‮RTL‬ text",
            "😀" * 50,
            "<b>bold</b><script>x</script>",
            "'; DROP TABLE dispatches; --",
            "{{ 7*7 }}",
            "%(number)s",
            "/start",
            "/start job_x",
            "/start inv_" + "A" * 24,
            "/jobs",
            "/help@fieldbot_test_bot",
            "/cancel",
            "/language",
            "14:30",
            "99:99",
            "x" * 10_000,
            "Relay x 2\nFuse",
            "/",
            "/ /",
            "//x",
        ]
    ),
)
forged_data = st.one_of(
    st.text(max_size=70),
    st.builds(
        lambda p, i, a, g: f"{p}:{i}:{a}:{g}",
        st.sampled_from(["off", "job", "lang", "cmp", "cust", "fu", "x"]),
        st.integers(min_value=-5, max_value=10**12),
        st.sampled_from(
            [
                "acc",
                "dec",
                "dr",
                "asg",
                "ctd",
                "eta",
                "omw",
                "leta",
                "way",
                "undo",
                "out",
                "nopa",
                "phd",
                "noex",
                "redo",
                "sub",
                "open",
                "nudge",
                "reasg",
                "set",
                "zz",
            ]
        ),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", max_size=12),
    ),
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    who = draw(st.sampled_from([ENGINEER, OTHER, SUPERVISOR, STRANGER]))
    kind = draw(st.sampled_from(list(Kind)))
    base = {
        "update_id": next(_ids),
        "kind": kind,
        "telegram_id": who,
        "chat_id": who,
        "language": draw(st.sampled_from([None, "en", "zh-hans", "fr", ""])),
        "edited": draw(st.booleans()),
        "message_id": 1,
    }
    if kind is Kind.TEXT:
        return Event(text=draw(nasty_text), **base)
    if kind is Kind.COMMAND:
        return Event(command=draw(st.text(max_size=40)), args=draw(nasty_text), **base)
    if kind is Kind.BUTTON:
        return Event(data=draw(forged_data), callback_id=f"q{next(_ids)}", **base)
    if kind is Kind.LOCATION:
        return Event(
            latitude=draw(st.floats(-90, 90)),
            longitude=draw(st.floats(-180, 180)),
            live=draw(st.booleans()),
            **base,
        )
    if kind is Kind.CONTACT:
        return Event(
            contact_phone=draw(nasty_text),
            contact_user_id=draw(st.sampled_from([None, who, who + 1])),
            **base,
        )
    if kind in (Kind.PHOTO, Kind.VOICE, Kind.DOCUMENT):
        return Event(
            file_ids=(draw(st.text(min_size=1, max_size=30)),),
            file_size=draw(st.integers(0, 10**9)),
            duration=draw(st.integers(0, 10**5)),
            mime_type=draw(st.text(max_size=20)),
            text=draw(st.text(max_size=30)),
            **base,
        )
    return Event(**base)


async def snapshot(services) -> list[tuple]:
    async with services.uow() as uow:
        dispatches = [
            (d.id, d.status, d.engineer_id)
            for d in await uow.session.scalars(select(Dispatch).order_by(Dispatch.id))
        ]
        offers = [(o.id, o.status) for o in await uow.session.scalars(select(Offer))]
    return dispatches + offers


def test_random_updates_never_crash_and_strangers_change_nothing(make_settings, db_url) -> None:
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete
    run(reset_database(db_url))
    services = build_services(make_settings(), clock=FakeClock())
    try:
        eng = run(onboard(services, ENGINEER, name="Eng"))
        run(onboard(services, OTHER, name="Other"))
        run(onboard(services, SUPERVISOR, role="supervisor", name="Boss", skills=()))
        run(new_dispatch(services))

        async def accept() -> None:
            async with services.uow() as uow:
                offer = await uow.session.scalar(
                    select(Offer).where(Offer.engineer_id == eng.user.id)
                )
            assert offer is not None
            await press(services, ENGINEER, f"off:{offer.id}:acc")

        run(accept())

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(events())
        def check(event: Event) -> None:
            before = run(snapshot(services))
            run(handle(services, event))  # raises on any unhandled error
            if event.telegram_id == STRANGER:
                assert run(snapshot(services)) == before

        check()
    finally:
        run(services.sessionmaker.kw["bind"].dispose())
        loop.close()
