"""What a handler knows about the update it routes: the event, the sender and their locale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.enums import Role
from bot.core.events import Event
from bot.core.messages import CallbackAnswer, Msg
from bot.db.models import User
from bot.services.uow import UnitOfWork


@dataclass
class Ctx:
    uow: UnitOfWork
    event: Event
    actor: User | None
    locale: str
    answered: bool = False

    @property
    def role(self) -> Role | None:
        return Role(self.actor.role) if self.actor else None

    async def reply(self, template: str, **params: Any) -> None:
        """A message back to the sender's chat, in their language."""
        if self.actor is not None and self.actor.chat_id == self.event.chat_id:
            await self.uow.out.send(Msg(template, params, user_id=self.actor.id))
        else:
            await self.uow.out.send(
                Msg(template, params, chat_id=self.event.chat_id, locale=self.locale)
            )

    async def send(self, msg: Msg) -> None:
        await self.uow.out.send(msg)

    async def answer(self, template: str = "", alert: bool = False, **params: Any) -> None:
        """Answer the button press once (a toast with ``template``, or silently)."""
        if not self.event.callback_id or self.answered:
            return
        self.answered = True
        await self.uow.out.answer(
            CallbackAnswer(self.event.callback_id, template, params, alert),
            self.locale,
            self.event.chat_id,
        )
