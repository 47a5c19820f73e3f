"""Staff onboarding through single-use invite links, /help per role, /language."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.core.events import Kind
from bot.db.models import Inbox, User
from bot.services.staff import hash_code
from tests.conftest import texts_to
from tests.helpers import new_staff, onboard, press, say, send_kind


async def test_invite_binds_the_account_and_greets_in_the_users_language(services) -> None:
    new = await new_staff(services, "engineer", "王伟")
    await say(services, 501, f"/start {new.code}", language="zh-hans")
    async with services.uow() as uow:
        user = await uow.session.scalar(select(User).where(User.telegram_id == 501))
    assert user is not None and user.name == "王伟" and user.locale == "zh_Hans"
    texts = await texts_to(services, 501)
    assert "欢迎，王伟" in texts[0]
    assert "服务工程师" in texts[0]
    assert "/jobs" in texts[1]  # engineer's help


async def test_invite_is_single_use(services) -> None:
    new = await onboard(services, 501)
    await say(services, 502, f"/start {new.code}")
    texts = await texts_to(services, 502)
    assert texts == [
        "This invite link has already been used. Please ask your service centre for a new one."
    ]
    async with services.uow() as uow:
        assert await uow.session.scalar(select(User).where(User.telegram_id == 502)) is None


async def test_unknown_and_expired_codes_are_refused(services, clock) -> None:
    await say(services, 503, "/start inv_doesnotexist")
    assert "not valid" in (await texts_to(services, 503))[-1]
    new = await new_staff(services)
    clock.advance(timedelta(days=8))
    await say(services, 504, f"/start {new.code}")
    assert "expired" in (await texts_to(services, 504))[-1]


async def test_codes_are_stored_hashed_and_random(services) -> None:
    a = await new_staff(services, name="A")
    b = await new_staff(services, name="B")
    assert a.code != b.code and len(a.code) >= 24
    assert a.link == f"https://t.me/fieldbot_test_bot?start={a.code}"
    from bot.db.models import Invite

    async with services.uow() as uow:
        hashes = list(await uow.session.scalars(select(Invite.code_hash)))
    assert hash_code(a.code) in hashes and a.code not in hashes


async def test_help_shows_each_role_its_own_commands(services) -> None:
    await onboard(services, 601, "engineer", "Eng")
    await onboard(services, 602, "supervisor", "Sup", skills=())
    await say(services, 601, "/help")
    await say(services, 602, "/help")
    engineer_help = (await texts_to(services, 601))[-1]
    supervisor_help = (await texts_to(services, 602))[-1]
    assert "/jobs" in engineer_help
    assert "/jobs" not in supervisor_help and "assign" in supervisor_help


async def test_language_can_be_changed(services) -> None:
    new = await onboard(services, 701)
    await say(services, 701, "/language")
    await press(services, 701, f"lang:{new.user.id}:set:zh_Hans")
    await say(services, 701, "/help")
    assert "您可以在这里" in (await texts_to(services, 701))[-1]


async def test_language_button_of_someone_else_changes_nothing(services) -> None:
    await onboard(services, 701)
    other = await onboard(services, 702, name="Other")
    await press(services, 701, f"lang:{other.user.id}:set:zh_Hans")
    async with services.uow() as uow:
        user = await uow.session.get(User, other.user.id)
    assert user is not None and user.locale == "en"


async def test_unknown_command_and_strangers(services) -> None:
    await say(services, 801, "/frobnicate")
    assert "There is no /frobnicate command" in (await texts_to(services, 801))[-1]
    await say(services, 801, "hello")
    assert "service desk bot" in (await texts_to(services, 801))[-1]
    await onboard(services, 802)
    await send_kind(services, 802, Kind.PHOTO, file_ids=("f1",))
    assert "no job is waiting for photos" in (await texts_to(services, 802))[-1]


async def test_a_redelivered_update_acts_once(services) -> None:
    from bot.handlers.router import handle
    from tests.helpers import text_event

    new = await new_staff(services)
    event = text_event(901, f"/start {new.code}")
    await handle(services, event)
    await handle(services, event)
    assert len(await texts_to(services, 901)) == 2  # welcome + help, once
    async with services.uow() as uow:
        row = await uow.session.get(Inbox, event.update_id)
    assert row is not None and row.status == "done"
