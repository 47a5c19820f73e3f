"""Small builders for flow tests: events as a user would produce them, and seeded data."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from bot.core.events import Event, Kind
from bot.db.models import Dispatch
from bot.flows.intake import create_dispatch
from bot.handlers.router import handle
from bot.runtime.events import command_parts
from bot.services.context import Services
from bot.services.staff import NewStaff, add_staff

_update_ids = itertools.count(1000)


def text_event(telegram_id: int, text: str, *, language: str = "en") -> Event:
    parts = command_parts(text)
    if parts:
        return Event(
            update_id=next(_update_ids),
            kind=Kind.COMMAND,
            telegram_id=telegram_id,
            chat_id=telegram_id,
            language=language,
            text=text,
            command=parts[0],
            args=parts[1],
        )
    return Event(
        update_id=next(_update_ids),
        kind=Kind.TEXT,
        telegram_id=telegram_id,
        chat_id=telegram_id,
        language=language,
        text=text,
    )


async def say(services: Services, telegram_id: int, text: str, *, language: str = "en") -> Event:
    event = text_event(telegram_id, text, language=language)
    await handle(services, event)
    return event


async def press(services: Services, telegram_id: int, data: str, *, language: str = "en") -> Event:
    event = Event(
        update_id=next(_update_ids),
        kind=Kind.BUTTON,
        telegram_id=telegram_id,
        chat_id=telegram_id,
        language=language,
        data=data,
        callback_id=f"cq{next(_update_ids)}",
        message_id=1,
    )
    await handle(services, event)
    return event


async def send_kind(services: Services, telegram_id: int, kind: Kind, **fields: Any) -> Event:
    event = Event(
        update_id=next(_update_ids),
        kind=kind,
        telegram_id=telegram_id,
        chat_id=telegram_id,
        **fields,
    )
    await handle(services, event)
    return event


async def new_staff(
    services: Services,
    role: str = "engineer",
    name: str = "Wang Wei",
    skills: tuple[str, ...] = ("repair",),
    phone: str | None = None,
) -> NewStaff:
    async with services.uow() as uow:
        new = await add_staff(uow, role=role, name=name, skills=list(skills), phone=phone)
        await uow.commit()
        return new


async def onboard(
    services: Services,
    telegram_id: int,
    role: str = "engineer",
    name: str = "Wang Wei",
    skills: tuple[str, ...] = ("repair",),
    language: str = "en",
) -> NewStaff:
    new = await new_staff(services, role, name, skills)
    await say(services, telegram_id, f"/start {new.code}", language=language)
    return new


def dispatch_fields(services: Services, **overrides: Any) -> dict[str, Any]:
    now = services.clock.now()
    start = now + timedelta(hours=2)
    fields: dict[str, Any] = {
        "customer": "Acme Foods",
        "contact_name": "Li Na",
        "contact_phone": "+86 138 0013 8000",
        "address": "88 Century Avenue, Pudong",
        "latitude": 31.2304,
        "longitude": 121.4737,
        "equipment_model": "CH-200 chiller",
        "quantity": 2,
        "serials": ["SN-1001", "SN-1002"],
        "service_type": "repair",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=3)).isoformat(),
    }
    fields.update(overrides)
    return fields


async def new_dispatch(services: Services, **overrides: Any) -> Dispatch:
    async with services.uow() as uow:
        dispatch = await create_dispatch(uow, dispatch_fields(services, **overrides), source="api")
        await uow.commit()
        return dispatch
