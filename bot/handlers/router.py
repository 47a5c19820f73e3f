"""Routing: which command, button or message goes to which flow, and who may use it."""

from __future__ import annotations

import logging
import secrets

import bot.handlers.common
import bot.handlers.complaints  # area: complaints
import bot.handlers.customer  # area: customer
import bot.handlers.engineer
import bot.handlers.followups  # area: time
import bot.handlers.supervision  # noqa: F401  (each handler module adds its routes)
from bot.core.callbacks import unpack
from bot.core.events import Event, Kind
from bot.handlers.context import Ctx
from bot.handlers.registry import BUTTONS, COMMANDS, DEFAULTS, FLOWS
from bot.i18n import locale_for
from bot.services import conversations, inbox
from bot.services.context import Services
from bot.services.errors import DomainError
from bot.services.staff import user_by_telegram
from bot.services.uow import UnitOfWork

log = logging.getLogger(__name__)


async def _in_flow(ctx: Ctx) -> bool:
    """Give the message to the user's current conversation, if it takes this kind."""
    if ctx.actor is None:
        return False
    step = await conversations.current(ctx.uow, ctx.actor.id)
    if step is None:
        return False
    routes = FLOWS.get(step.flow)
    if routes is None or (routes.roles is not None and ctx.role not in routes.roles):
        await conversations.leave(ctx.uow, ctx.actor.id)  # a flow that no longer exists
        return False
    handler = routes.handlers.get(ctx.event.kind)
    if handler is None and ctx.event.edited:
        return True  # a live location moving where none is asked: no reminder each time
    handler = handler or routes.handlers.get(Kind.OTHER)
    if handler is None:
        await ctx.reply("expected_text")
        return True
    await handler(ctx, step)
    return True


async def _command(ctx: Ctx) -> None:
    command = COMMANDS.get(ctx.event.command)
    if command is None:
        await ctx.reply("unknown_command", command=ctx.event.command[:32])
    elif not command.allows(ctx):
        await ctx.reply("err_forbidden" if ctx.actor else "welcome_stranger")
    else:
        await command.handler(ctx)


async def _button(ctx: Ctx) -> None:
    data = unpack(ctx.event.data)
    resolver = BUTTONS.get(data.prefix) if data else None
    entry = resolver(data) if resolver is not None and data is not None else None
    if data is None or entry is None:
        await ctx.answer("err_stale_button", alert=True)
        return
    roles, handler = entry
    if roles is not None and (ctx.role is None or ctx.role not in roles):
        await ctx.answer("err_forbidden", alert=True)
        return
    await handler(ctx, data)


async def route(ctx: Ctx) -> None:
    """Commands and buttons by name; anything else by the user's conversation, then by kind."""
    event = ctx.event
    if not event.private and event.kind is not Kind.BUTTON:
        return  # groups: only buttons on our own alerts are handled
    if event.edited and event.kind is not Kind.LOCATION:
        return  # an edit of an earlier message is no answer (the runtimes drop them too)
    if event.kind is Kind.COMMAND:
        await _command(ctx)
    elif event.kind is Kind.BUTTON:
        await _button(ctx)
    elif await _in_flow(ctx):
        return
    elif event.kind in DEFAULTS:
        await DEFAULTS[event.kind](ctx)
    elif event.edited:
        return
    elif ctx.actor is None:
        await ctx.reply("welcome_stranger")
    else:
        await ctx.reply("not_understood")


async def _context(uow: UnitOfWork, event: Event) -> Ctx:
    actor = await user_by_telegram(uow, event.telegram_id)
    locale = (actor.locale if actor else None) or locale_for(
        event.language, uow.settings.default_locale
    )
    return Ctx(uow=uow, event=event, actor=actor, locale=locale)


async def handle(services: Services, event: Event) -> None:
    """Handle one update in one transaction: effects, outbox, timers and inbox-done together.

    The inbox row is marked done first: on PostgreSQL that locks it, so the same update fed
    twice at once (a redelivery racing a retry) is handled by whichever gets there first and
    the other finds it done. A refusal (``DomainError``) rolls the handler's work back and
    records the refusal and the mark in a fresh transaction: refusals are rare, so the common
    path pays for no savepoint.
    """
    inbox.reached(event.update_id)
    async with services.uow() as uow:
        if not await inbox.take(uow.session, event.update_id, uow.clock.now()):
            return  # handled already: a redelivery
        ctx = await _context(uow, event)
        try:
            await route(ctx)
        except DomainError as exc:
            refusal = exc
            await uow.rollback()
        else:
            await ctx.answer()
            await uow.commit()
            return
    async with services.uow() as uow:
        if not await inbox.take(uow.session, event.update_id, uow.clock.now()):
            return
        ctx = await _context(uow, event)
        if event.kind is Kind.BUTTON:
            await ctx.answer(refusal.template, alert=True, **refusal.params)
        else:
            await ctx.reply(refusal.template, **refusal.params)
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
        ctx = await _context(uow, event)
        await ctx.reply("err_internal", error_id=error_id)
        await ctx.answer()
        await inbox.store(uow.session, [{"update_id": event.update_id}], uow.clock.now())
        await inbox.mark_failed(uow.session, event.update_id, uow.clock.now(), error_id)
        await uow.commit()
    return error_id


__all__ = ["handle", "handle_failure", "route"]
