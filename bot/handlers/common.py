"""Commands everyone has: /start, /help, /language, /cancel."""

from __future__ import annotations

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.flows import customer, onboarding
from bot.handlers.access import ANYONE
from bot.handlers.context import Ctx
from bot.handlers.registry import (
    START_PAYLOADS,
    ButtonHandler,
    buttons,
    command,
    start_payload,
)
from bot.services import conversations
from bot.services.errors import DomainError
from bot.services.staff import INVITE_PREFIX

EVERY_ROLE = frozenset(Role)


@command("start", ANYONE)
async def cmd_start(ctx: Ctx) -> None:
    payload = ctx.event.args.strip()
    if payload:
        for prefix, handler in START_PAYLOADS.items():
            if payload.startswith(prefix):
                await handler(ctx, payload)
                return
        await ctx.reply("invite_unknown")
        return
    if ctx.actor is None:  # a customer shares their phone (button) to find their jobs
        await customer.greet_stranger(ctx.uow, chat_id=ctx.event.chat_id, locale=ctx.locale)
        return
    await onboarding.greet_known(ctx.uow, ctx.actor)


@start_payload(INVITE_PREFIX)
async def start_invite(ctx: Ctx, payload: str) -> None:
    await onboarding.start_with_invite(
        ctx.uow,
        code=payload,
        telegram_id=ctx.event.telegram_id,
        chat_id=ctx.event.chat_id,
        language=ctx.event.language,
        locale=ctx.locale,
    )


@command("help", ANYONE)
async def cmd_help(ctx: Ctx) -> None:
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    await onboarding.send_help(ctx.uow, ctx.actor)


@command("language", EVERY_ROLE)
async def cmd_language(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await onboarding.ask_language(ctx.uow, ctx.actor)


@command("cancel", EVERY_ROLE)
async def cmd_cancel(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await conversations.leave(ctx.uow, ctx.actor.id)
    await ctx.reply("cancelled")


async def btn_language(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.id != ctx.actor.id or not await onboarding.set_language(ctx.uow, ctx.actor, data.arg):
        raise DomainError("err_stale_button")


@buttons("lang")
def language_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return EVERY_ROLE, btn_language
