"""Routing: which command, button or message goes to which flow, and who may use it."""

from __future__ import annotations

import logging
import secrets

from bot.core.callbacks import Callback, unpack
from bot.core.enums import Role
from bot.core.events import Event, Kind
from bot.flows import offers, onboarding
from bot.handlers.access import ANYONE, ENGINEERS, SUPERVISING, Handler, Route
from bot.handlers.context import Ctx
from bot.i18n import locale_for
from bot.services import conversations, inbox
from bot.services.context import Services
from bot.services.errors import DomainError
from bot.services.staff import user_by_telegram

log = logging.getLogger(__name__)


# ---- commands -------------------------------------------------------------------------------


async def cmd_start(ctx: Ctx) -> None:
    payload = ctx.event.args.strip()
    if payload and onboarding.is_invite(payload):
        await onboarding.start_with_invite(
            ctx.uow,
            code=payload,
            telegram_id=ctx.event.telegram_id,
            chat_id=ctx.event.chat_id,
            language=ctx.event.language,
            locale=ctx.locale,
        )
        return
    if payload:
        await ctx.reply("invite_unknown")
        return
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    await onboarding.greet_known(ctx.uow, ctx.actor)


async def cmd_help(ctx: Ctx) -> None:
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    await onboarding.send_help(ctx.uow, ctx.actor)


async def cmd_language(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await onboarding.ask_language(ctx.uow, ctx.actor)


async def cmd_cancel(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await conversations.leave(ctx.uow, ctx.actor.id)
    await ctx.reply("cancelled")


COMMANDS: dict[str, Route] = {
    "start": Route(cmd_start, ANYONE),
    "help": Route(cmd_help, ANYONE),
    "language": Route(cmd_language, frozenset(Role)),
    "cancel": Route(cmd_cancel, frozenset(Role)),
}


# ---- buttons --------------------------------------------------------------------------------


async def btn_offer(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "acc":
        await offers.accept(ctx.uow, ctx.actor, data.id)
        await ctx.answer("toast_accepted")
    elif data.action == "dec":
        await offers.ask_decline_reason(ctx.uow, ctx.actor, data.id)
        await conversations.enter(ctx.uow, ctx.actor.id, "decline", "reason", offer_id=data.id)
        await ctx.answer()
    elif data.action == "dr" and data.arg in offers.DECLINE_REASONS:
        reason = ctx.uow.services.renderer.label(f"reason_{data.arg}", "en")
        await offers.decline(ctx.uow, ctx.actor, data.id, reason)
        await conversations.leave(ctx.uow, ctx.actor.id, "decline")
        await ctx.answer("toast_declined")
    else:
        raise DomainError("err_stale_button")


async def btn_assign(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action != "asg" or not data.arg.isdigit():
        raise DomainError("err_stale_button")
    await offers.assign_by_hand(ctx.uow, ctx.actor, data.id, int(data.arg))
    await ctx.answer()


async def btn_language(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.id != ctx.actor.id or not await onboarding.set_language(ctx.uow, ctx.actor, data.arg):
        raise DomainError("err_stale_button")
    await ctx.answer()


ButtonHandler = Route  # the handler of a button route takes (ctx, data); see BUTTONS below
BUTTONS: dict[str, tuple[frozenset[Role] | None, object]] = {
    "off": (ENGINEERS, btn_offer),
    "job": (SUPERVISING, btn_assign),
    "lang": (frozenset(Role), btn_language),
}


# ---- free text and other messages -----------------------------------------------------------


async def on_text(ctx: Ctx) -> None:
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    step = await conversations.current(ctx.uow, ctx.actor.id)
    if step is not None and (step.flow, step.step) == ("decline", "reason"):
        await offers.decline(ctx.uow, ctx.actor, int(step.data["offer_id"]), ctx.event.text)
        await conversations.leave(ctx.uow, ctx.actor.id, "decline")
        return
    await ctx.reply("not_understood")


async def on_other(ctx: Ctx) -> None:
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    step = await conversations.current(ctx.uow, ctx.actor.id)
    if step is not None:
        await ctx.reply("expected_text")
        return
    await ctx.reply("not_understood")


# ---- the one entry point --------------------------------------------------------------------


async def route(ctx: Ctx) -> None:
    event = ctx.event
    if not event.private and event.kind is not Kind.BUTTON:
        return  # groups: only buttons on our own alerts are handled
    if event.kind is Kind.COMMAND:
        command = COMMANDS.get(event.command)
        if command is None:
            await ctx.reply("unknown_command", command=event.command[:32])
            return
        if not command.allows(ctx):
            await ctx.reply("err_forbidden" if ctx.actor else "welcome_stranger")
            return
        await command.handler(ctx)
        return
    if event.kind is Kind.BUTTON:
        data = unpack(event.data)
        entry = BUTTONS.get(data.prefix) if data else None
        if data is None or entry is None:
            await ctx.answer("err_stale_button", alert=True)
            return
        roles, handler = entry
        if roles is not None and (ctx.role is None or ctx.role not in roles):
            await ctx.answer("err_forbidden", alert=True)
            return
        await handler(ctx, data)  # type: ignore[operator]
        await ctx.answer()
        return
    if event.kind is Kind.TEXT:
        await on_text(ctx)
        return
    await on_other(ctx)


async def handle(services: Services, event: Event) -> None:
    """Handle one update in one transaction: effects, outbox, timers and inbox-done together."""
    async with services.uow() as uow:
        session = uow.session
        await inbox.store(session, [{"update_id": event.update_id}], uow.clock.now())
        if await inbox.is_done(session, event.update_id):
            return
        actor = await user_by_telegram(uow, event.telegram_id)
        locale = (actor.locale if actor else None) or locale_for(
            event.language, services.settings.default_locale
        )
        ctx = Ctx(uow=uow, event=event, actor=actor, locale=locale)
        try:
            async with session.begin_nested():
                await route(ctx)
        except DomainError as refusal:
            if event.kind is Kind.BUTTON:
                await ctx.answer(refusal.template, alert=True, **refusal.params)
            else:
                await ctx.reply(refusal.template, **refusal.params)
        await ctx.answer()
        await inbox.mark_done(session, event.update_id, uow.clock.now())
        await uow.commit()


async def handle_failure(services: Services, event: Event, error: BaseException) -> str:
    """An unexpected error: log it with an id the user can quote, tell them politely."""
    error_id = secrets.token_hex(4)
    log.error(
        "update %s failed (error id %s): %s",
        event.update_id,
        error_id,
        type(error).__name__,
        exc_info=error,
    )
    async with services.uow() as uow:
        actor = await user_by_telegram(uow, event.telegram_id)
        locale = (actor.locale if actor else None) or locale_for(
            event.language, services.settings.default_locale
        )
        ctx = Ctx(uow=uow, event=event, actor=actor, locale=locale)
        await ctx.reply("err_internal", error_id=error_id)
        await ctx.answer()
        await inbox.store(uow.session, [{"update_id": event.update_id}], uow.clock.now())
        await inbox.mark_failed(uow.session, event.update_id, uow.clock.now(), error_id)
        await uow.commit()
    return error_id


__all__ = ["Handler", "handle", "handle_failure", "route"]
