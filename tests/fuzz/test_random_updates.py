"""Property-based: any update, from anyone, at any step — no crash, one clear reply in the
user's language, and no change to the database where none is due.

The world (tests/fuzz/world.py) has an engineer at every step of the job, a customer at every
step of sign-off, rating and complaint intake, supervisors in the middle of a handover and a
fault report, and strangers; it is built once, and every example runs in a transaction that
is rolled back, so each one meets exactly that world.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.events import Event, Kind
from bot.i18n import locale_for
from tests.fuzz import strategies as s
from tests.fuzz.conftest import EXAMPLES_SCALE
from tests.fuzz.world import (
    TEXT_METHODS,
    Actor,
    Loop,
    Outcome,
    World,
    build_world,
    event_for,
    run_update,
)
from tests.fuzz.world import world_url as url_in


def fuzz(examples: int) -> settings:
    """``examples`` per run (scaled by the profile, see conftest.py); no deadline: the
    machine is shared and one update may take a while."""
    return settings(
        max_examples=max(1, int(examples * EXAMPLES_SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def world(loop: Loop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        tmp = tmp_path_factory.mktemp("fuzz")
        mp.chdir(tmp)  # no stray .env from the developer's folder
        built = loop.run(build_world(url_in(tmp)))
    yield built
    loop.run(built.engine.dispose())


# ---- the properties ------------------------------------------------------------------------


def expected_locale(actor: Actor, event: Event) -> str:
    return actor.locale or locale_for(event.language, "en")


def check_language(outcome: Outcome, actor: Actor, event: Event) -> None:
    """Every reply to the actor is a template rendered in their language."""
    locale = expected_locale(actor, event)
    for row in outcome.to(actor.telegram_id):
        if row.method not in TEXT_METHODS and "text" not in row.payload:
            continue
        text = row.payload["text"]
        assert text.strip(), f"an empty reply: {row.method}"
        template, rendered_in = outcome.template_of(row)
        assert rendered_in == locale, (template, rendered_in, locale)
        if locale == "zh_Hans":
            assert CJK.search(text), f"{template} is not translated: {text[:200]!r}"


def check_refused(outcome: Outcome, actor: Actor, event: Event) -> None:
    """Refused or ignored: nothing changed, nobody else told, exactly one clear reply."""
    assert outcome.changes == {}, f"{actor.name}: state changed on {event!r}: {outcome.changes}"
    assert outcome.elsewhere(actor.telegram_id) == [], [
        (r.chat_id, r.payload.get("text", "")[:80]) for r in outcome.elsewhere(actor.telegram_id)
    ]
    mine = outcome.to(actor.telegram_id)
    shown = [(r.method, r.payload.get("text", "")[:80]) for r in mine]
    if event.kind is Kind.BUTTON:
        assert [r.method for r in mine] == ["answerCallbackQuery"], shown
        assert mine[0].payload.get("text"), f"a silent answer to a refused button: {shown}"
    else:
        assert [r.method for r in mine] == ["sendMessage"], (actor.name, shown)
    check_language(outcome, actor, event)


def run(loop: Loop, world: World, event: Event, *, compare: bool = True) -> Outcome:
    return loop.run(run_update(world, event, compare=compare))  # raises on any unhandled error


def actors(world: World) -> st.SearchStrategy[Actor]:
    return st.sampled_from(world.actors)


@fuzz(100)
@given(data=st.data())
def test_the_wrong_input_at_every_step_changes_nothing_and_gets_one_reply(
    loop: Loop, world: World, data: st.DataObject
) -> None:
    """A photo where text is expected, a sticker where a button is, text at a button step,
    a contact or location nobody asked for, an unknown or forbidden command: refused once."""
    actor = data.draw(actors(world), label="actor")
    event = data.draw(st.one_of(s.wrong_messages(actor), s.refused_commands(actor)), label="event")
    check_refused(run(loop, world, event), actor, event)


@fuzz(80)
@given(data=st.data())
def test_forged_and_stale_buttons_change_nothing_and_get_one_alert(
    loop: Loop, world: World, data: st.DataObject
) -> None:
    """Garbage, over 64 bytes, unknown or negative ids, someone else's ids, an own button of
    an earlier or later step: one alert, nothing else."""
    actor = data.draw(actors(world), label="actor")
    event = data.draw(s.wrong_buttons(actor, world.others), label="event")
    check_refused(run(loop, world, event), actor, event)


@fuzz(40)
@given(data=st.data())
def test_edited_messages_change_nothing_and_say_nothing(
    loop: Loop, world: World, data: st.DataObject
) -> None:
    """A live location's updates arrive every few seconds as edits: where no location is
    asked they are ignored without a word (a reminder each time would flood the chat), and an
    edit of an earlier message is never read as the answer to the step reached since."""
    actor = data.draw(actors(world), label="actor")
    event = data.draw(s.edited(actor), label="event")
    outcome = run(loop, world, event)
    assert outcome.changes == {}, f"{actor.name}: state changed on {event!r}: {outcome.changes}"
    assert outcome.rows == [], [(r.chat_id, r.payload.get("text", "")[:80]) for r in outcome.rows]


@st.composite
def any_update(draw: st.DrawFn, actor: Actor) -> Event:
    """Anything at all, valid answers included (the original fuzz strategy, per actor)."""
    kind = draw(st.sampled_from(list(Kind)))
    if kind is Kind.BUTTON:
        raw = draw(st.one_of(s.malformed_data, s.no_such_thing, forged_data))
        return s.button(actor, raw)
    if kind is Kind.COMMAND:
        name = draw(st.one_of(st.sampled_from(sorted(s.ROLE_COMMANDS["engineer"]
                                                     | s.ROLE_COMMANDS["supervisor"]
                                                     | s.ROLE_COMMANDS["customer"])),
                              st.text(max_size=40)))  # fmt: skip
        return s.command(actor, name, draw(s.nasty_text))
    return draw(s.message(actor, kind, s.nasty_text, edited=draw(st.booleans())))


forged_data = st.builds(
    lambda p, i, a, g: f"{p}:{i}:{a}:{g}",
    st.sampled_from(s.PREFIXES),
    st.integers(min_value=0, max_value=40),
    st.sampled_from(s.ACTIONS),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", max_size=12),
)


@fuzz(100)
@given(data=st.data())
def test_any_update_from_anyone_never_crashes_and_answers_in_their_language(
    loop: Loop, world: World, data: st.DataObject
) -> None:
    actor = data.draw(actors(world), label="actor")
    event = data.draw(any_update(actor), label="event")
    outcome = run(loop, world, event, compare=actor.name == "stranger@idle")
    mine = outcome.to(actor.telegram_id)
    answers = [r for r in mine if r.method == "answerCallbackQuery"]
    if event.kind is Kind.BUTTON:
        assert len(answers) == 1, [r.method for r in mine]
        assert answers[0].payload.get("text") or len(mine) > 1, "a button pressed for nothing"
    else:
        assert answers == []
        quiet = event.edited or (event.kind is Kind.LOCATION and event.live)
        if not quiet:
            assert any(r.method in TEXT_METHODS for r in mine), f"silence after {event!r}"
    check_language(outcome, actor, event)
    if actor.name == "stranger@idle" and not is_complaint(event):
        # A stranger changes nothing but by filing a complaint (which records who they are).
        assert outcome.changes == {}, outcome.changes


def is_complaint(event: Event) -> bool:
    return event.kind is Kind.COMMAND and event.command == "complaint"


unstorable = st.builds(
    lambda a, c, b: a + c + b,
    st.text(max_size=20),
    st.sampled_from(["\x00", "\ud800", "\udfff", "\x00\ud83d"]),
    st.text(max_size=20),
)


@st.composite
def with_unstorable_text(draw: st.DrawFn, actor: Actor) -> Event:
    """NUL or a lone surrogate in whatever text the update carries (JSON allows both)."""
    kind = draw(st.sampled_from([Kind.TEXT, Kind.PHOTO, Kind.CONTACT, Kind.COMMAND, Kind.BUTTON]))
    bad = draw(unstorable)
    name = draw(st.one_of(st.just(""), unstorable))
    if kind is Kind.BUTTON:
        return s.button(actor, bad)
    if kind is Kind.COMMAND:
        command = draw(st.sampled_from(["start", "complaint", "mycomplaints", "fault", "report"]))
        event = s.command(actor, command, bad)
    elif kind is Kind.CONTACT:
        event = event_for(actor, kind, contact_phone=bad)
    elif kind is Kind.PHOTO:
        event = event_for(actor, kind, file_ids=(bad,), text=bad, mime_type="image/jpeg")
    else:
        event = event_for(actor, kind, text=bad)
    return replace(event, first_name=name)


@fuzz(60)
@given(data=st.data())
def test_nul_and_lone_surrogates_anywhere_never_crash(
    loop: Loop, world: World, data: st.DataObject
) -> None:
    """Neither database stores NUL or a lone surrogate; the text is taken, or refused, with
    a reply — never an internal error at the step that stores it."""
    actor = data.draw(actors(world), label="actor")
    event = data.draw(with_unstorable_text(actor), label="event")
    outcome = run(loop, world, event, compare=False)
    assert outcome.to(actor.telegram_id), "no reply"
    check_language(outcome, actor, event)


def test_the_harness_sees_changes_and_rolls_them_back(loop: Loop, world: World) -> None:
    """Guards the properties above against passing vacuously: a valid answer does change the
    tables and reply, and the next example meets the world as it was built."""
    actor = world.actor("engineer@contact")
    press = s.button(actor, s.data("job", actor.own["dispatch"], "ctd"))
    first = run(loop, world, press)
    assert set(first.changes) == {"conversations"}  # now at the ETA step
    assert [r.method for r in first.to(actor.telegram_id)] == [
        "sendMessage",
        "answerCallbackQuery",
    ]
    again = run(loop, world, press)
    assert again.changes == first.changes  # the same change: the first was rolled back
