"""Supervision entry points: /report, /fault, /duty, /handover and their buttons and steps.

Who may do what (checked here, once):

- ``/report`` and its buttons: supervisors and managers (engineers and customers are refused).
- ``/fault``: any staff member reports a major fault; supervisors, managers and dispatchers
  also see the open ones and track them (update and close buttons). Customers never see faults.
- ``/duty``: any staff member. ``/handover`` and its buttons: supervisors.
"""

from __future__ import annotations

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.flows import duty, faults, reports
from bot.handlers.access import STAFF, SUPERVISING
from bot.handlers.context import Ctx
from bot.handlers.registry import ButtonHandler, buttons, command, flow
from bot.services import conversations
from bot.services.conversations import Step
from bot.services.errors import DomainError

REPORT_READERS = frozenset({Role.SUPERVISOR, Role.MANAGER})
SUPERVISORS = frozenset({Role.SUPERVISOR})


# ---- /report ----------------------------------------------------------------------------------


@command("report", REPORT_READERS)
async def cmd_report(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await reports.on_demand(ctx.uow, ctx.actor, ctx.event.args)


async def btn_report(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action not in reports.KINDS:
        raise DomainError("err_stale_button")
    await ctx.answer()
    await reports.on_demand(ctx.uow, ctx.actor, data.action)


@buttons("rep")
def report_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return REPORT_READERS, btn_report


# ---- /fault -----------------------------------------------------------------------------------


@command("fault", STAFF)
async def cmd_fault(ctx: Ctx) -> None:
    assert ctx.actor is not None
    wants_new = ctx.event.args.strip().lower() in ("new", "report", "新", "报告")
    if wants_new or ctx.role not in SUPERVISING:
        await faults.start_report(ctx.uow, ctx.actor)
    else:
        await faults.list_faults(ctx.uow, ctx.actor)


async def _fault_step(ctx: Ctx, *steps: str) -> Step:
    """The user's place in the fault report, if it is one of ``steps``; else a stale button."""
    assert ctx.actor is not None
    step = await conversations.current(ctx.uow, ctx.actor.id)
    if step is None or step.flow != faults.FLOW or step.step not in steps:
        raise DomainError("err_stale_button")
    return step


async def btn_fault_report(ctx: Ctx, data: Callback) -> None:
    """Buttons of the report conversation (any staff member)."""
    assert ctx.actor is not None
    if data.action == "new":
        await faults.start_report(ctx.uow, ctx.actor)
    elif data.action == "now":
        step = await _fault_step(ctx, "time")
        await faults.report_time_now(ctx.uow, ctx.actor, step.data)
    elif data.action == "nocust":
        step = await _fault_step(ctx, "customer")
        await faults.report_customer(ctx.uow, ctx.actor, step.data, None)
    elif data.action == "cust":
        step = await _fault_step(ctx, "customer")
        await faults.report_customer(ctx.uow, ctx.actor, step.data, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("fltn")
def fault_report_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return STAFF, btn_fault_report


async def btn_fault_track(ctx: Ctx, data: Callback) -> None:
    """Tracking buttons on a fault (supervisors, managers, dispatchers)."""
    assert ctx.actor is not None
    if data.action == "upd":
        await faults.ask_update(ctx.uow, ctx.actor, data.id)
    elif data.action == "close":
        await faults.start_close(ctx.uow, ctx.actor, data.id)
    elif data.action == "send":
        await faults.close_fault(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("flt")
def fault_track_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return SUPERVISING, btn_fault_track


async def fault_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    uow, me, text = ctx.uow, ctx.actor, ctx.event.text
    if step.step in faults.REPORT_STEPS:
        await faults.report_text(uow, me, step.step, step.data, text)
    elif step.step not in ("update", "confirm", *faults.ANALYSIS_STEPS):
        await conversations.leave(uow, me.id, faults.FLOW)
        await ctx.reply("not_understood")
    elif ctx.role not in SUPERVISING:
        raise DomainError("err_forbidden")
    elif step.step == "update":
        await faults.add_update(uow, me, int(step.data["fault_id"]), text)
    elif step.step == "confirm":
        await ctx.reply("expected_button")
    else:
        await faults.analysis_text(uow, me, step.step, step.data, text)


async def fault_other(ctx: Ctx, step: Step) -> None:
    await ctx.reply("expected_text")


flow(faults.FLOW, STAFF, text=fault_text, other=fault_other)


# ---- /duty and /handover ----------------------------------------------------------------------


@command("duty", STAFF)
async def cmd_duty(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await duty.show_duty(ctx.uow, ctx.actor)


@command("handover", SUPERVISORS)
async def cmd_handover(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await duty.start_handover(ctx.uow, ctx.actor)


async def btn_handover(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "nonotes":
        await duty.set_notes(ctx.uow, ctx.actor, data.id, None)
    elif data.action == "to" and data.arg.isdigit():
        await duty.submit(ctx.uow, ctx.actor, data.id, int(data.arg))
    elif data.action == "ok":
        await duty.confirm(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("hov")
def handover_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return SUPERVISORS, btn_handover


async def handover_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    if step.step == "notes":
        await duty.set_notes(ctx.uow, ctx.actor, int(step.data["handover_id"]), ctx.event.text)
    else:
        await ctx.reply("expected_button")


async def handover_other(ctx: Ctx, step: Step) -> None:
    await ctx.reply("expected_text" if step.step == "notes" else "expected_button")


flow(duty.FLOW, SUPERVISORS, text=handover_text, other=handover_other)
