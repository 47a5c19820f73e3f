"""Renders messages as outbox rows in the recipient's locale, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.enums import OutboxStatus, Priority
from bot.core.messages import Button, CallbackAnswer, KeyButton, Msg
from bot.db.models import Outbox, User
from bot.i18n import locale_for
from bot.services.quiet import next_allowed

if TYPE_CHECKING:
    from bot.services.uow import UnitOfWork

OUTBOX = cast(Table, Outbox.__table__)  # Core inserts: no ORM work per row
PARSE_MODE = "HTML"
MAX_TEXT = 4096


async def release_leases(session: AsyncSession) -> int:
    """Free every claimed, unsent message (its sender is known to be gone); how many."""
    freed = await session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.status == OutboxStatus.PENDING.value, OUTBOX.c.locked_until.is_not(None))
        .values(locked_until=None)
    )
    return int(getattr(freed, "rowcount", 0) or 0)


class OutboxWriter:
    """``uow.out.send(Msg(...))`` renders and queues; the sender delivers after commit."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.sent: list[Msg] = []
        self.rows: list[dict[str, Any]] = []  # inserted at once when the unit commits

    async def flush(self) -> None:
        """Insert the queued rows (one executemany, in the order they were queued)."""
        if self.rows:
            rows, self.rows = self.rows, []
            await self.uow.session.execute(insert(OUTBOX), rows)

    def mark(self) -> int:
        """Where the queue stands now: ``discard_since(mark)`` undoes what came after."""
        return len(self.rows)

    def discard_since(self, mark: int) -> None:
        del self.rows[mark:]

    def queue(
        self,
        chat_id: int,
        method: str,
        payload: dict[str, Any],
        *,
        priority: int = Priority.NORMAL,
        not_before: datetime | None = None,
        ref: str | None = None,
        edit_of: str | None = None,
    ) -> None:
        """Queue one Bot API call as it is (a file, say): in order with every other message."""
        now = self.uow.clock.now()
        self.rows.append(
            {
                "chat_id": chat_id,
                "method": method,
                "payload": payload,
                "priority": int(priority),
                "status": OutboxStatus.PENDING.value,
                "attempts": 0,
                "not_before": not_before or now,
                "created_at": now,
                "ref": ref,
                "edit_of": edit_of,
            }
        )

    async def _recipient(self, msg: Msg, *, inactive: bool = False) -> tuple[int, str, str] | None:
        """Chat, locale and time zone of ``msg``'s recipient (``inactive``: also a user who
        left, whose chat is still theirs)."""
        settings = self.uow.settings
        if msg.user_id is not None:
            user = await self.uow.session.get(User, msg.user_id)
            if user is None or user.chat_id is None or not (user.active or inactive):
                return None
            locale = msg.locale or user.locale or settings.default_locale
            return user.chat_id, locale, user.timezone or settings.timezone
        if msg.chat_id is None:
            raise ValueError("a message needs a user_id or a chat_id")
        return msg.chat_id, msg.locale or settings.default_locale, settings.timezone

    def _inline(self, rows: tuple[tuple[Button, ...], ...], locale: str) -> dict[str, Any]:
        renderer = self.uow.services.renderer
        keyboard = []
        for row in rows:
            out_row = []
            for button in row:
                item: dict[str, Any] = {
                    "text": renderer.label(button.label, locale, dict(button.params))
                }
                if button.url:
                    item["url"] = button.url
                else:
                    item["callback_data"] = button.data
                out_row.append(item)
            keyboard.append(out_row)
        return {"inline_keyboard": keyboard}

    def _reply_keyboard(
        self, rows: tuple[tuple[KeyButton, ...], ...], locale: str
    ) -> dict[str, Any]:
        if not rows:
            return {"remove_keyboard": True}
        renderer = self.uow.services.renderer
        keyboard = []
        for row in rows:
            out_row = []
            for button in row:
                item: dict[str, Any] = {"text": renderer.label(button.label, locale)}
                if button.request_location:
                    item["request_location"] = True
                if button.request_contact:
                    item["request_contact"] = True
                out_row.append(item)
            keyboard.append(out_row)
        return {"keyboard": keyboard, "resize_keyboard": True, "one_time_keyboard": True}

    def _add(self, chat_id: int, method: str, payload: dict[str, Any], msg: Msg, tz: str) -> None:
        not_before = None
        if not msg.urgent:
            not_before = next_allowed(self.uow.clock.now(), tz, self.uow.settings.quiet_hours)
        self.queue(
            chat_id,
            method,
            payload,
            priority=msg.priority,
            not_before=not_before,
            ref=msg.ref,
            edit_of=msg.edit,
        )

    async def send(self, msg: Msg) -> bool:
        """Render ``msg`` for its recipient and queue it; False when nobody can receive it."""
        recipient = await self._recipient(msg)
        if recipient is None:
            return False
        self._put(msg, *recipient)
        return True

    def _put(self, msg: Msg, chat_id: int, locale: str, tz: str) -> None:
        self.sent.append(msg)
        text = self.uow.services.renderer.render(msg.template, locale, {"tz": tz, **msg.params})
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": PARSE_MODE}
        payload["link_preview_options"] = {"is_disabled": True}
        if msg.buttons is not None:
            payload["reply_markup"] = self._inline(msg.buttons, locale)
        elif msg.keyboard is not None and not msg.edit:
            payload["reply_markup"] = self._reply_keyboard(msg.keyboard, locale)
        if msg.edit:
            payload.pop("link_preview_options")
            self._add(chat_id, "editMessageText", payload, msg, tz)
        else:
            self._add(chat_id, "sendMessage", payload, msg, tz)
        if msg.location is not None:
            lat, lon = msg.location
            loc = {"chat_id": chat_id, "latitude": lat, "longitude": lon}
            self._add(chat_id, "sendLocation", loc, _pin_of(msg), tz)
        for file_id in msg.photos:
            self._add(chat_id, "sendPhoto", {"chat_id": chat_id, "photo": file_id}, _plain(msg), tz)

    async def replace_sent(self, msg: Msg, *, refs: Sequence[str], prefix: str) -> int:
        """Replace by ``msg`` (buttons removed) each message in its recipient's chat that was
        queued under one of ``refs`` or a ref starting with ``prefix``, and delete their
        location pins; how many.

        A message that went out, or may have (it was tried), gets an edit queued after it in
        the chat, also one queued by this unit of work; one never tried is withdrawn instead,
        so it never shows what it said; one that failed is left alone.
        """
        recipient = await self._recipient(msg, inactive=True)
        if recipient is None:
            return 0
        chat_id, locale, tz = recipient
        shown = await self._shown(chat_id, [*refs, *(ref + PIN for ref in refs)], prefix)
        edit = replace(msg, ref=None, buttons=None, keyboard=None)
        for ref in shown:
            if ref.endswith(PIN):  # a pin cannot become text
                self.queue(chat_id, "deleteMessage", {"chat_id": chat_id}, edit_of=ref)
            else:
                self._put(replace(edit, edit=ref), chat_id, locale, tz)
        return len(shown)

    async def delete_pins(self, user_id: int, refs: Sequence[str]) -> None:
        """Delete the location pins sent to ``user_id`` with the messages under ``refs``."""
        recipient = await self._recipient(Msg("", user_id=user_id), inactive=True)
        if recipient is None:
            return
        chat_id = recipient[0]
        for ref in await self._shown(chat_id, [ref + PIN for ref in refs], None):
            self.queue(chat_id, "deleteMessage", {"chat_id": chat_id}, edit_of=ref)

    async def _shown(self, chat_id: int, refs: Sequence[str], prefix: str | None) -> list[str]:
        """The refs under ``refs`` or ``prefix`` of the messages in ``chat_id`` that went out or
        may have, stored or queued by this unit of work, oldest first (never tried: withdrawn)."""
        queued = [
            r["ref"]
            for r in self.rows
            if r["chat_id"] == chat_id
            and r["ref"]
            and (r["ref"] in refs or (prefix is not None and r["ref"].startswith(prefix)))
        ]
        stored = await _shown(self.uow.session, chat_id, refs, prefix)
        return list(dict.fromkeys([*stored, *queued]))

    async def answer(self, answer: CallbackAnswer, locale: str, chat_id: int) -> None:
        """Answer a button press (stops the client's spinner), with an optional toast."""
        payload: dict[str, Any] = {"callback_query_id": answer.callback_id}
        if answer.template:
            text = self.uow.services.renderer.render(answer.template, locale, answer.params)
            payload["text"] = text[:200]
            payload["show_alert"] = answer.alert
        self._add(chat_id, "answerCallbackQuery", payload, Msg("", priority=Priority.URGENT), "UTC")


def _plain(msg: Msg) -> Msg:
    return Msg("", priority=msg.priority, urgent=msg.urgent)


PIN = ":pin"  # a message's location pin is a message of its own, under the message's ref + PIN


def _pin_of(msg: Msg) -> Msg:
    return replace(_plain(msg), ref=msg.ref + PIN if msg.ref else None)


async def _shown(
    session: AsyncSession, chat_id: int, refs: Sequence[str], prefix: str | None
) -> list[str]:
    """The refs of the messages stored for ``chat_id`` under ``refs`` or ``prefix`` that went
    out or may have, oldest first; the ones never tried are deleted here (withdrawn), and so
    are the edits of any of them not tried yet."""
    live = (OutboxStatus.PENDING.value, OutboxStatus.SENT.value)
    rows = (
        await session.execute(
            select(OUTBOX.c.id, OUTBOX.c.ref, OUTBOX.c.status)
            .where(  # ix_outbox_pending: the chat's own messages, not the whole outbox
                OUTBOX.c.status.in_(live),
                OUTBOX.c.chat_id == chat_id,
                OUTBOX.c.ref.in_(refs)
                if prefix is None
                else OUTBOX.c.ref.in_(refs) | OUTBOX.c.ref.startswith(prefix, autoescape=True),
            )
            .order_by(OUTBOX.c.id)
        )
    ).all()
    pending = [r.id for r in rows if r.status == OutboxStatus.PENDING.value]
    withdrawn: set[int] = set()
    if pending:
        # Not one the sender holds (a lease) or tried: it may be on its way already. A row
        # the sender claims meanwhile is locked, and then this statement leaves it alone.
        gone = await session.execute(
            delete(OUTBOX)
            .where(
                OUTBOX.c.id.in_(pending),
                OUTBOX.c.status == OutboxStatus.PENDING.value,
                OUTBOX.c.attempts == 0,
                OUTBOX.c.locked_until.is_(None),
            )
            .returning(OUTBOX.c.id)
        )
        withdrawn = set(gone.scalars())
    if rows:
        # An edit of one of them not tried yet would show the old text once more before the
        # replacement (or fail, its message withdrawn): the replacement supersedes it.
        await session.execute(
            delete(OUTBOX).where(
                OUTBOX.c.status == OutboxStatus.PENDING.value,
                OUTBOX.c.chat_id == chat_id,
                OUTBOX.c.edit_of.in_({r.ref for r in rows}),
                OUTBOX.c.attempts == 0,
                OUTBOX.c.locked_until.is_(None),
            )
        )
    return [r.ref for r in rows if r.id not in withdrawn]


__all__ = ["OutboxWriter", "locale_for"]
