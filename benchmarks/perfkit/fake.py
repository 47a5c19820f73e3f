"""The fake Bot API as the benchmarks use it: a recorder of timestamps and cheap per-chat waits.

``BenchTelegram`` is ``bot.fakeapi.FakeTelegram`` with one benchmark-only change:
webhook delivery can be **concurrent** (up to ``max_connections`` requests in flight, as
Telegram does, one at a time per chat so each chat's order holds) and can be spread
**round-robin over several worker URLs**, playing the load balancer in front of several
worker processes. The stock fake posts one update at a time to the one registered URL, as the
end-to-end tests want it.

Simulated users do not use ``FakeTelegram.wait_for`` (every waiter wakes on every change and
re-copies the chat): :class:`Recorder` observes the transcript once and wakes only the chat
concerned; :class:`SimUser` reads the fake's chat state directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.fakeapi import FakeTelegram, FakeUser, TranscriptEntry
from bot.fakeapi.state import MessageRecord
from bot.services.inbox import chat_of

log = logging.getLogger(__name__)


class BenchTelegram(FakeTelegram):
    """FakeTelegram with concurrent / round-robin webhook delivery."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.webhook_targets: list[str] = []  # base URLs; empty = the URL given to setWebhook
        self.webhook_concurrency = 40
        self.deliveries_per_target: dict[str, int] = {}

    # ---- webhook delivery: concurrent, ordered per chat, optionally round-robin
    async def _webhook_loop(self) -> None:
        in_flight: dict[Any, asyncio.Task[None]] = {}
        turn = 0

        async def deliver(hook: Any, pending: Any, target: str) -> None:
            ok = False
            try:
                ok = await self._post_update(hook, pending)
            except Exception:
                log.exception("bench webhook delivery failed")
            if ok:
                self.deliveries_per_target[target] = self.deliveries_per_target.get(target, 0) + 1
                with contextlib.suppress(ValueError):
                    self._pending.remove(pending)
                self._touch()
            else:
                await asyncio.sleep(self.webhook_retry_delay)
            self._notify()

        try:
            while not self._closing.is_set():
                hook = self._webhook
                if hook is None:
                    return
                for key in [k for k, t in in_flight.items() if t.done()]:
                    del in_flight[key]
                launched = False
                seen: set[Any] = set()
                for pending in list(self._pending):
                    if len(in_flight) >= max(1, self.webhook_concurrency):
                        break
                    chat = chat_of(pending.update)
                    key = chat if chat is not None else ("update", pending.update_id)
                    if key in seen or key in in_flight:
                        seen.add(key)
                        continue  # an earlier update of this chat is still on its way
                    seen.add(key)
                    target = hook.url
                    if self.webhook_targets:
                        target = self.webhook_targets[turn % len(self.webhook_targets)]
                        turn += 1
                        target_hook = dataclasses.replace(hook, url=target + "/telegram/webhook")
                    else:
                        target_hook = hook
                    in_flight[key] = asyncio.create_task(deliver(target_hook, pending, target))
                    launched = True
                if not launched:
                    await self._wait_change(1.0)
        finally:
            for task in in_flight.values():
                task.cancel()


@dataclass
class Entry:
    at: float
    direction: str
    chat_id: int
    kind: str


@dataclass
class Recorder:
    """Every transcript entry's time; wakes the simulated user of the chat a bot entry is for."""

    entries: list[Entry] = field(default_factory=list)
    waiters: dict[int, asyncio.Event] = field(default_factory=dict)
    recording: bool = False

    def observe(self, entry: TranscriptEntry) -> None:
        if self.recording:
            self.entries.append(Entry(entry.at, entry.direction, entry.chat_id, entry.kind))
        if entry.direction == "bot":
            event = self.waiters.get(entry.chat_id)
            if event is not None:
                event.set()

    def event_for(self, chat_id: int) -> asyncio.Event:
        event = self.waiters.get(chat_id)
        if event is None:
            event = self.waiters[chat_id] = asyncio.Event()
        return event


class StepTimeout(Exception):
    pass


class SimUser:
    """A simulated Telegram user that waits for the bot the cheap way (see module docstring)."""

    def __init__(
        self, tg: FakeTelegram, recorder: Recorder, user: FakeUser, timeout: float = 60.0
    ) -> None:
        self.tg = tg
        self.recorder = recorder
        self.user = user
        self.timeout = timeout
        self.cursor = 0
        self.actions = 0

    @property
    def id(self) -> int:
        return self.user.id

    def log(self) -> list[MessageRecord]:
        chats = self.tg._chats
        state = chats.get(self.user.id)
        return state.bot_log if state is not None else []

    async def wait(
        self, accept: Callable[[MessageRecord], bool], *, what: str, from_start: bool = False
    ) -> MessageRecord:
        """The first bot message at or after the cursor that ``accept``s; moves the cursor."""
        event = self.recorder.event_for(self.user.id)
        deadline = time.monotonic() + self.timeout
        while True:
            event.clear()
            log_ = self.log()
            start = 0 if from_start else self.cursor
            for index in range(start, len(log_)):
                record = log_[index]
                if not record.deleted and accept(record):
                    if not from_start:
                        self.cursor = index + 1
                    return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                texts = [str(r.current.get("text", ""))[:60] for r in log_[-4:]]
                raise StepTimeout(f"user {self.user.id}: no {what} within {self.timeout}s: {texts}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()

    async def wait_button(
        self, prefix: str, *, from_start: bool = False
    ) -> tuple[MessageRecord, str]:
        """A message with an inline button whose callback data starts with ``prefix``."""
        found: list[str] = []

        def accept(record: MessageRecord) -> bool:
            for row in record.inline_keyboard:
                for button in row:
                    data = str(button.get("callback_data") or "")
                    if data.startswith(prefix):
                        found.append(data)
            return bool(found)

        record = await self.wait(accept, what=f"button {prefix}*", from_start=from_start)
        return record, found[0]

    async def wait_any(self) -> MessageRecord:
        return await self.wait(lambda r: True, what="message")

    async def wait_location_keyboard(self) -> MessageRecord:
        def accept(record: MessageRecord) -> bool:
            keyboard = record.reply_keyboard or {}
            return any(
                b.get("request_location") for row in keyboard.get("keyboard", []) for b in row
            )

        return await self.wait(accept, what="location keyboard")

    def buttons_of(self, record: MessageRecord, prefix: str) -> list[str]:
        return [
            str(b.get("callback_data"))
            for row in record.inline_keyboard
            for b in row
            if str(b.get("callback_data") or "").startswith(prefix)
        ]

    async def press(self, record: MessageRecord, data: str) -> None:
        self.actions += 1
        await self.user.press_data(data, record.message_id)

    async def send(self, text: str) -> None:
        self.actions += 1
        await self.user.send(text)

    async def share_location(self, lat: float, lon: float) -> None:
        self.actions += 1
        await self.user.share_location(lat, lon)

    async def send_photo(self) -> None:
        self.actions += 1
        await self.user.send_photo(caption="Relay replaced")
