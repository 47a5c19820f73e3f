"""Someone the bot cannot reach: the supervisors on duty are told, once per person."""

from __future__ import annotations

from bot.flows import delivery
from tests.conftest import texts_to
from tests.helpers import onboard

BOSS, DEPUTY, ENGINEER, STRANGER = 7101, 7102, 7103, 7199
ALERT = "cannot be delivered"


async def _alerts(services, chat: int) -> list[str]:
    return [t for t in await texts_to(services, chat) if ALERT in t]


async def test_each_supervisor_on_duty_is_told_once_about_each_person(services) -> None:
    await onboard(services, BOSS, role="supervisor", name="Zhou Min", skills=())
    await onboard(services, DEPUTY, role="supervisor", name="Qian Hui", skills=())
    await onboard(services, ENGINEER, name="Wang Wei")
    async with services.uow() as uow:
        await delivery.unreachable(uow, [ENGINEER, ENGINEER, STRANGER])
        await uow.commit()
    for supervisor in (BOSS, DEPUTY):
        assert await _alerts(services, supervisor) == [
            "⚠️ Messages to Wang Wei (service engineer) cannot be delivered: "
            "they may have blocked the bot."
        ]


async def test_a_supervisor_out_of_reach_is_reported_to_the_others_not_to_themself(
    services,
) -> None:
    await onboard(services, BOSS, role="supervisor", name="Zhou Min", skills=())
    await onboard(services, DEPUTY, role="supervisor", name="Qian Hui", skills=())
    async with services.uow() as uow:
        await delivery.unreachable(uow, [BOSS])
        await uow.commit()
    assert await _alerts(services, BOSS) == []
    assert len(await _alerts(services, DEPUTY)) == 1


async def test_a_chat_of_nobody_we_know_alerts_nobody(services) -> None:
    await onboard(services, BOSS, role="supervisor", name="Zhou Min", skills=())
    async with services.uow() as uow:
        await delivery.unreachable(uow, [STRANGER])
        await uow.commit()
    assert await _alerts(services, BOSS) == []
