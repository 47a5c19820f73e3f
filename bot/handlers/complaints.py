"""Complaint entry points: /complaint, /mycomplaints, /complaints, the intake and ticket buttons,
and messages during the complaint conversations (role checks here; rules in the flow)."""

from __future__ import annotations

from bot.core.callbacks import Callback
from bot.core.enums import STAFF_ROLES, Role
from bot.core.events import Kind
from bot.flows import complaints as flow_
from bot.flows.complaints import Piece
from bot.handlers.access import ANYONE, STAFF, SUPERVISING
from bot.handlers.context import Ctx
from bot.handlers.registry import ButtonHandler, buttons, command, flow
from bot.services.conversations import Step
from bot.services.errors import DomainError

CUSTOMERS = frozenset({Role.CUSTOMER})
EVERYONE = frozenset(Role)
CUSTOMER_ACTIONS = frozenset({"add", "ok", "nok", "rate"})
SUPERVISOR_ACTIONS = frozenset({"tko", "own", "ownto"})
STAFF_ACTIONS = frozenset(
    {
        "take",
        "reply",
        "ask",
        "xfer",
        "xto",
        "wdone",
        "note",
        "call",
        "urg",
        "res",
        "when",
        "cbok",
        "cbnok",
    }
)


def piece_of(ctx: Ctx) -> Piece:
    """What the customer sent, reduced to what a complaint keeps."""
    event = ctx.event
    file_id = event.file_ids[0] if event.file_ids else ""
    if event.kind is Kind.TEXT:
        return Piece("text", event.text)
    if event.kind in (Kind.PHOTO, Kind.VOICE, Kind.DOCUMENT) and file_id:
        return Piece(event.kind.value, event.text, file_id, event.file_size)
    return Piece("other")


def _digits(arg: str) -> int:
    if not arg.isdigit() or len(arg) > 18:
        raise DomainError("err_stale_button")
    return int(arg)


# ---- commands ------------------------------------------------------------------------------------


@command("complaint", ANYONE)
async def cmd_complaint(ctx: Ctx) -> None:
    event = ctx.event
    if ctx.actor is None:
        await flow_.start_for_stranger(
            ctx.uow,
            telegram_id=event.telegram_id,
            chat_id=event.chat_id,
            first_name=event.first_name,
            language=event.language,
        )
    elif ctx.role is Role.CUSTOMER:
        await flow_.start_intake(ctx.uow, ctx.actor)
    else:
        raise DomainError("err_cmp_staff_intake")


@command("mycomplaints", CUSTOMERS)
async def cmd_mycomplaints(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await flow_.my_complaints(ctx.uow, ctx.actor, ctx.event.args)


@command("complaints", STAFF)
async def cmd_complaints(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await flow_.staff_list(ctx.uow, ctx.actor)


# ---- buttons -------------------------------------------------------------------------------------


async def btn_intake(ctx: Ctx, data: Callback) -> None:
    """The customer's own intake buttons (``cmi:<their user id>:<action>[:arg]``)."""
    assert ctx.actor is not None
    me, uow = ctx.actor, ctx.uow
    if data.id != me.id:
        raise DomainError("err_stale_button")
    if data.action == "new":
        await flow_.start_intake(uow, me, dispatch_id=_digits(data.arg) if data.arg else None)
    elif data.action == "cat":
        await flow_.intake_category(uow, me, data.arg)
    elif data.action == "job":
        await flow_.intake_job(uow, me, _digits(data.arg))
    elif data.action == "nojob":
        await flow_.intake_job(uow, me, None)
    elif data.action == "done":
        await flow_.intake_done(uow, me)
    elif data.action == "stop":
        await flow_.intake_stop(uow, me)
    else:
        raise DomainError("err_stale_button")


@buttons("cmi")
def intake_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return CUSTOMERS, btn_intake


async def btn_customer(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    me, uow, cid = ctx.actor, ctx.uow, data.id
    if data.action == "add":
        await flow_.ask_customer_to_add(uow, me, cid)
    elif data.action in ("ok", "nok"):
        await flow_.callback_answer(uow, me, cid, data.action == "ok")
    elif data.action == "rate":
        await flow_.rate(uow, me, cid, _digits(data.arg))
    else:
        raise DomainError("err_stale_button")


async def btn_view(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if ctx.role is Role.CUSTOMER:
        await flow_.show_to_customer(ctx.uow, ctx.actor, data.id)
    else:
        await flow_.show_to_staff(ctx.uow, ctx.actor, data.id)


async def btn_staff(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    me, uow, cid, action = ctx.actor, ctx.uow, data.id, data.action
    if action == "take":
        await flow_.take(uow, me, cid)
        await ctx.answer("cmp_toast_taken")
    elif action == "tko":
        await flow_.take_over(uow, me, cid)
        await ctx.answer("cmp_toast_taken")
    elif action == "own":
        await flow_.choose_owner(uow, me, cid)
    elif action == "ownto":
        await flow_.reassign(uow, me, cid, _digits(data.arg))
    elif action in ("reply", "ask"):
        await flow_.begin_reply(uow, me, cid, ask=action == "ask")
    elif action == "xfer":
        await flow_.choose_worker(uow, me, cid)
    elif action == "xto":
        await flow_.pick_worker(uow, me, cid, _digits(data.arg))
    elif action == "wdone":
        await flow_.work_done(uow, me, cid)
    elif action == "note":
        await flow_.begin_note(uow, me, cid)
    elif action == "call":
        await flow_.show_phone(uow, me, cid)
        if not ctx.event.private:
            await ctx.answer("cmp_toast_private")
    elif action == "urg":
        await flow_.mark_urgent(uow, me, cid)
    elif action == "res":
        await flow_.begin_resolve(uow, me, cid)
    elif action == "when":
        await flow_.resolve_in_days(uow, me, cid, _digits(data.arg))
    elif action in ("cbok", "cbnok"):
        await flow_.callback_answer(uow, me, cid, action == "cbok", by_phone=True)
    else:
        raise DomainError("err_stale_button")


@buttons("cmp")
def complaint_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler] | None:
    if data.action in CUSTOMER_ACTIONS:
        return CUSTOMERS, btn_customer
    if data.action == "view":
        return EVERYONE, btn_view
    if data.action in SUPERVISOR_ACTIONS:
        return SUPERVISING, btn_staff
    if data.action in STAFF_ACTIONS:
        return STAFF, btn_staff
    return None


# ---- messages during the conversations ----------------------------------------------------------


async def intake_message(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    event, uow, me = ctx.event, ctx.uow, ctx.actor
    if event.edited:
        return
    if step.step == "name":
        if event.kind is not Kind.TEXT:
            await ctx.reply("expected_text")
            return
        await flow_.intake_name(uow, me, step.data, event.text)
    elif step.step == "phone":
        if event.kind is Kind.CONTACT:
            await flow_.intake_phone(uow, me, step.data, event.contact_phone)
        elif event.kind is Kind.TEXT:
            await flow_.intake_phone(uow, me, step.data, event.text)
        else:
            raise DomainError("err_cmp_phone")
    elif step.step in ("category", "job"):
        await ctx.reply("expected_button")
    else:
        await flow_.intake_piece(uow, me, piece_of(ctx))


flow(
    flow_.INTAKE,
    CUSTOMERS,
    text=intake_message,
    photo=intake_message,
    voice=intake_message,
    document=intake_message,
    contact=intake_message,
    other=intake_message,
)


async def answer_message(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    if ctx.event.edited:
        return
    await flow_.customer_says(ctx.uow, ctx.actor, int(step.data["complaint_id"]), piece_of(ctx))


flow(
    flow_.ANSWER,
    CUSTOMERS,
    text=answer_message,
    photo=answer_message,
    voice=answer_message,
    document=answer_message,
    other=answer_message,
)


async def staff_message(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    event, uow, me = ctx.event, ctx.uow, ctx.actor
    if event.edited:
        return
    cid = int(step.data["complaint_id"])
    if step.step in ("reply", "ask"):
        await flow_.relay_to_customer(uow, me, cid, piece_of(ctx), ask=step.step == "ask")
        return
    if event.kind is not Kind.TEXT:
        await ctx.reply("expected_text")
        return
    if step.step == "note":
        await flow_.add_note(uow, me, cid, event.text)
    elif step.step == "xfer":
        await flow_.transfer(uow, me, cid, int(step.data["worker_id"]), event.text)
    elif step.step == "solution":
        await flow_.solution_text(uow, me, cid, event.text)
    elif step.step == "when":
        await flow_.resolve_at_text(uow, me, cid, event.text)
    else:
        await ctx.reply("expected_text")


flow(
    flow_.STAFF,
    frozenset(STAFF_ROLES),
    text=staff_message,
    photo=staff_message,
    voice=staff_message,
    document=staff_message,
    other=staff_message,
)
