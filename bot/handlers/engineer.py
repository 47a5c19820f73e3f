"""The engineer's entry points: offers, job buttons, /jobs, and messages during a job."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.core.events import Kind
from bot.flows import job, offers
from bot.handlers.access import ENGINEERS, SUPERVISING
from bot.handlers.context import Ctx
from bot.handlers.registry import ButtonHandler, buttons, command, default, flow
from bot.services import conversations
from bot.services.conversations import Step
from bot.services.errors import DomainError

SUPERVISOR_JOB_ACTIONS = frozenset({"asg", "nudge", "reasg"})


@command("jobs", ENGINEERS)
async def cmd_jobs(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await job.list_jobs(ctx.uow, ctx.actor)


# ---- buttons --------------------------------------------------------------------------------


async def btn_offer(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "acc":
        await ctx.answer("toast_accepted")
        await offers.accept(ctx.uow, ctx.actor, data.id)
    elif data.action == "dec":
        await offers.ask_decline_reason(ctx.uow, ctx.actor, data.id)
        await conversations.enter(ctx.uow, ctx.actor.id, "decline", "reason", offer_id=data.id)
    elif data.action == "dr" and data.arg in offers.DECLINE_REASONS:
        reason = ctx.uow.services.renderer.label(f"reason_{data.arg}", "en")
        await offers.decline(ctx.uow, ctx.actor, data.id, reason)
        await conversations.leave(ctx.uow, ctx.actor.id, "decline")
        await ctx.answer("toast_declined")
    else:
        raise DomainError("err_stale_button")


@buttons("off")
def offer_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return ENGINEERS, btn_offer


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


@buttons("job")
def job_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    if data.action in SUPERVISOR_JOB_ACTIONS:
        return SUPERVISING, btn_job_supervisor
    return ENGINEERS, btn_job_engineer


# ---- messages during a conversation ----------------------------------------------------------


async def decline_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await offers.decline(ctx.uow, ctx.actor, int(step.data["offer_id"]), ctx.event.text)
    await conversations.leave(ctx.uow, ctx.actor.id, "decline")


flow("decline", ENGINEERS, text=decline_text)


async def job_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await job.on_text(ctx.uow, ctx.actor, step.step, int(step.data["dispatch_id"]), ctx.event.text)


async def _remind_step(ctx: Ctx, step: Step) -> None:
    """The wrong kind of message at this step: one reply, nothing changes."""
    assert ctx.actor is not None
    await job.remind(ctx.uow, ctx.actor, step.step, int(step.data["dispatch_id"]))


async def job_photo(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    if step.step != "report_photos":
        await _remind_step(ctx, step)
        return
    await job.report_photo(ctx.uow, ctx.actor, int(step.data["dispatch_id"]), ctx.event.file_ids[0])


async def job_location(ctx: Ctx, step: Step | None) -> None:
    assert ctx.actor is not None
    event = ctx.event
    assert event.latitude is not None and event.longitude is not None
    dispatch_id = int(step.data["dispatch_id"]) if step is not None else None
    await job.location_shared(
        ctx.uow,
        ctx.actor,
        dispatch_id,
        latitude=event.latitude,
        longitude=event.longitude,
        live=event.live,
        edited=event.edited,
    )


async def job_other(ctx: Ctx, step: Step) -> None:
    await _remind_step(ctx, step)


flow(job.FLOW, ENGINEERS, text=job_text, photo=job_photo, location=job_location, other=job_other)


@default(Kind.LOCATION)
async def location_without_step(ctx: Ctx) -> None:
    if ctx.role is not Role.ENGINEER:
        if not ctx.event.edited:
            await ctx.reply("not_understood")
        return
    await job_location(ctx, None)


@default(Kind.PHOTO)
async def photo_without_step(ctx: Ctx) -> None:
    if ctx.role is Role.ENGINEER:
        await ctx.reply("err_photo_no_job")
    else:
        await ctx.reply("not_understood")


__all__ = ["SUPERVISING"]
