"""Routing: which command, button or message goes to which flow, and who may use it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bot.core.callbacks import Callback, unpack
from bot.core.enums import Role
from bot.core.events import Event, Kind
from bot.flows import job, offers, onboarding
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


async def cmd_jobs(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await job.list_jobs(ctx.uow, ctx.actor)


COMMANDS: dict[str, Route] = {
    "jobs": Route(cmd_jobs, ENGINEERS),
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


def _minute_arg(data: Callback) -> datetime:
    if not data.arg.isdigit() or len(data.arg) > 10:
        raise DomainError("err_stale_button")
    return datetime.fromtimestamp(int(data.arg) * 60, tz=UTC)


async def btn_job_engineer(ctx: Ctx, data: Callback) -> None:
    """The engineer's buttons on their own job (ownership is checked by the flow)."""
    assert ctx.actor is not None
    uow, me, job_id = ctx.uow, ctx.actor, data.id
    action = data.action
    if action == "ctd":
        await job.customer_reached(uow, me, job_id)
    elif action in ("eta", "omw", "leta"):
        mode = {"eta": "contact", "omw": "omw", "leta": "late"}[action]
        await job.set_eta(uow, me, job_id, _minute_arg(data), mode)
    elif action == "way":
        await job.on_my_way(uow, me, job_id)
    elif action == "undo":
        await job.undo_check_in(uow, me, job_id)
    elif action == "out":
        await job.report_outcome(uow, me, job_id, data.arg)
    elif action == "nopa":
        await job.report_parts(uow, me, job_id, None)
    elif action == "phd":
        await job.report_photos_done(uow, me, job_id)
    elif action == "noex":
        await job.report_extra(uow, me, job_id, None)
    elif action == "redo":
        await job.report_redo(uow, me, job_id)
    elif action == "sub":
        await job.submit_report(uow, me, job_id)
    elif action == "open":
        await job.open_job(uow, me, job_id)
    else:
        raise DomainError("err_stale_button")


async def btn_job_supervisor(ctx: Ctx, data: Callback) -> None:
    """One-tap actions on escalations."""
    assert ctx.actor is not None
    if data.action == "asg" and data.arg.isdigit():
        await offers.assign_by_hand(ctx.uow, ctx.actor, data.id, int(data.arg))
    elif data.action == "nudge":
        await job.nudge(ctx.uow, ctx.actor, data.id)
    elif data.action == "reasg":
        await job.reassign(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


async def btn_language(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.id != ctx.actor.id or not await onboarding.set_language(ctx.uow, ctx.actor, data.arg):
        raise DomainError("err_stale_button")


ButtonHandler = Callable[[Ctx, Callback], Awaitable[None]]
SUPERVISOR_JOB_ACTIONS = frozenset({"asg", "nudge", "reasg"})


def button_route(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler] | None:
    """Which handler a button goes to, and the roles that may press it."""
    if data.prefix == "off":
        return ENGINEERS, btn_offer
    if data.prefix == "job":
        if data.action in SUPERVISOR_JOB_ACTIONS:
            return SUPERVISING, btn_job_supervisor
        return ENGINEERS, btn_job_engineer
    if data.prefix == "lang":
        return frozenset(Role), btn_language
    return None


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
    if step is not None and step.flow == job.FLOW and ctx.role is Role.ENGINEER:
        await job.on_text(
            ctx.uow, ctx.actor, step.step, int(step.data["dispatch_id"]), ctx.event.text
        )
        return
    await ctx.reply("not_understood")


async def on_location(ctx: Ctx) -> None:
    event = ctx.event
    if ctx.actor is None or ctx.role is not Role.ENGINEER:
        if not event.edited:
            await ctx.reply("not_understood")
        return
    assert event.latitude is not None and event.longitude is not None
    step = await conversations.current(ctx.uow, ctx.actor.id)
    dispatch_id = None
    if step is not None and step.flow == job.FLOW:
        dispatch_id = int(step.data["dispatch_id"])
    await job.location_shared(
        ctx.uow,
        ctx.actor,
        dispatch_id,
        latitude=event.latitude,
        longitude=event.longitude,
        live=event.live,
        edited=event.edited,
    )


async def on_photo(ctx: Ctx) -> None:
    if ctx.actor is not None and ctx.role is Role.ENGINEER:
        step = await conversations.current(ctx.uow, ctx.actor.id)
        if step is not None and step.flow == job.FLOW and step.step == "report_photos":
            await job.report_photo(
                ctx.uow, ctx.actor, int(step.data["dispatch_id"]), ctx.event.file_ids[0]
            )
            return
        if step is None or step.flow != job.FLOW:
            await ctx.reply("err_photo_no_job")
            return
    await on_other(ctx)


async def on_other(ctx: Ctx) -> None:
    if ctx.actor is None:
        await ctx.reply("welcome_stranger")
        return
    step = await conversations.current(ctx.uow, ctx.actor.id)
    if step is not None:
        await ctx.reply("expected_text")
        if step.flow == job.FLOW and ctx.role is Role.ENGINEER:
            await job.open_job(ctx.uow, ctx.actor, int(step.data["dispatch_id"]))
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
        entry = button_route(data) if data else None
        if data is None or entry is None:
            await ctx.answer("err_stale_button", alert=True)
            return
        roles, handler = entry
        if roles is not None and (ctx.role is None or ctx.role not in roles):
            await ctx.answer("err_forbidden", alert=True)
            return
        await handler(ctx, data)
        await ctx.answer()
        return
    if event.kind is Kind.TEXT:
        await on_text(ctx)
    elif event.kind is Kind.LOCATION:
        await on_location(ctx)
    elif event.kind is Kind.PHOTO:
        await on_photo(ctx)
    elif not event.edited:
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
