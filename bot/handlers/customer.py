"""The customer's entry points (job links, shared contacts, sign-off, feedback, /myjobs) and
the engineer's and supervisor's sign-off buttons (paper form, reminder)."""

from __future__ import annotations

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.core.events import Kind
from bot.flows import customer
from bot.handlers.access import ENGINEERS, SUPERVISING
from bot.handlers.context import Ctx
from bot.handlers.registry import (
    ButtonHandler,
    buttons,
    command,
    default,
    flow,
    start_payload,
)
from bot.services.conversations import Step
from bot.services.customers import JOB_LINK_PREFIX
from bot.services.errors import DomainError

CUSTOMERS = frozenset({Role.CUSTOMER})


# ---- linking ------------------------------------------------------------------------------------


@start_payload(JOB_LINK_PREFIX)
async def start_job_link(ctx: Ctx, payload: str) -> None:
    event = ctx.event
    await customer.link_by_code(
        ctx.uow,
        ctx.actor,
        code=payload,
        telegram_id=event.telegram_id,
        chat_id=event.chat_id,
        language=event.language,
        first_name=event.first_name,
    )


@default(Kind.CONTACT)
async def contact_shared(ctx: Ctx) -> None:
    event = ctx.event
    await customer.link_by_contact(
        ctx.uow,
        ctx.actor,
        telegram_id=event.telegram_id,
        chat_id=event.chat_id,
        language=event.language,
        first_name=event.first_name,
        phone=event.contact_phone,
        contact_user_id=event.contact_user_id,
        locale=ctx.locale,
    )


async def contact_in_flow(ctx: Ctx, step: Step) -> None:
    await contact_shared(ctx)


# ---- /myjobs and the customer's buttons ---------------------------------------------------------


@command("myjobs", CUSTOMERS)
async def cmd_myjobs(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await customer.my_jobs(ctx.uow, ctx.actor)


async def btn_signoff(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "ok" and not data.arg:
        await customer.confirm_signoff(
            ctx.uow, ctx.actor, data.id, telegram_id=ctx.event.telegram_id
        )
    elif data.action == "no" and not data.arg:
        await customer.ask_reject_reason(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("so")
def signoff_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return CUSTOMERS, btn_signoff


async def btn_feedback(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "r":
        await customer.rate(ctx.uow, ctx.actor, data.id, data.arg)
    elif data.action == "skip" and not data.arg:
        await customer.skip_comment(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("fb")
def feedback_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return CUSTOMERS, btn_feedback


async def btn_customer_job(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "sign" and not data.arg:
        await customer.review_signoff(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("cj")
def customer_job_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return CUSTOMERS, btn_customer_job


# ---- messages while the customer answers --------------------------------------------------------


async def reason_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await customer.reject_signoff(
        ctx.uow,
        ctx.actor,
        int(step.data["signoff_id"]),
        ctx.event.text,
        telegram_id=ctx.event.telegram_id,
    )


flow(customer.FLOW_SIGNOFF, CUSTOMERS, text=reason_text, contact=contact_in_flow)


async def comment_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await customer.comment(ctx.uow, ctx.actor, int(step.data["dispatch_id"]), ctx.event.text)


flow(customer.FLOW_FEEDBACK, CUSTOMERS, text=comment_text, contact=contact_in_flow)


# ---- the engineer: paper sign-off ---------------------------------------------------------------


@command("paper", ENGINEERS)
async def cmd_paper(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await customer.paper_jobs(ctx.uow, ctx.actor)


async def btn_paper(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "up" and not data.arg:
        await customer.start_paper(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("pap")
def paper_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return ENGINEERS, btn_paper


async def paper_photo(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await customer.paper_signed(
        ctx.uow, ctx.actor, int(step.data["dispatch_id"]), ctx.event.file_ids[0]
    )


async def paper_document(ctx: Ctx, step: Step) -> None:
    """A scan sent as a file (an image or a PDF) is as good as a photo."""
    mime = ctx.event.mime_type
    if ctx.event.file_ids and (mime.startswith("image/") or mime == "application/pdf"):
        await paper_photo(ctx, step)
    else:
        await paper_other(ctx, step)


async def paper_other(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await ctx.reply("signoff_paper_expected_photo")


flow(
    customer.FLOW_PAPER,
    ENGINEERS,
    photo=paper_photo,
    document=paper_document,
    other=paper_other,
)


# ---- the supervisor: remind the customer from the escalation ------------------------------------


async def btn_signoff_supervisor(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action == "rem" and not data.arg:
        await customer.supervisor_reminds(ctx.uow, ctx.actor, data.id)
    else:
        raise DomainError("err_stale_button")


@buttons("sos")
def signoff_supervisor_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return SUPERVISING, btn_signoff_supervisor
