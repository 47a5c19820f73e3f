"""Follow-up entry points: the answer buttons, the description that follows, /followups."""

from __future__ import annotations

from bot.core.callbacks import Callback
from bot.core.enums import Role
from bot.flows import followups
from bot.handlers.access import SUPERVISING
from bot.handlers.context import Ctx
from bot.handlers.registry import ButtonHandler, buttons, command, flow
from bot.services.conversations import Step
from bot.services.errors import DomainError

EVERY_ROLE = frozenset(Role)  # whoever was asked (the flow checks it is them)


@command("followups", SUPERVISING)
async def cmd_followups(ctx: Ctx) -> None:
    assert ctx.actor is not None
    await followups.show_unanswered(ctx.uow, ctx.actor)


async def btn_followup(ctx: Ctx, data: Callback) -> None:
    assert ctx.actor is not None
    if data.action not in followups.ACTIONS or data.arg:
        raise DomainError("err_stale_button")
    await followups.answer(ctx.uow, ctx.actor, data.id, data.action)


@buttons("fu")
def followup_buttons(data: Callback) -> tuple[frozenset[Role] | None, ButtonHandler]:
    return EVERY_ROLE, btn_followup


async def followup_text(ctx: Ctx, step: Step) -> None:
    assert ctx.actor is not None
    await followups.described(
        ctx.uow, ctx.actor, step.step, int(step.data["followup_id"]), ctx.event.text
    )


async def followup_other(ctx: Ctx, step: Step) -> None:
    await ctx.reply("expected_text")


flow(followups.FLOW, EVERY_ROLE, text=followup_text, other=followup_other)
