"""The load of the crash test: a recording fake Bot API and the simulated people.

``CrashTelegram`` is the benchmarks' fake (``perfkit.fake.BenchTelegram``) that also keeps
every API request the bot made with the monotonic time it arrived and finished and the status
it got, so duplicates can be matched against the kill times afterwards.

Per job there is one engineer and one customer (each in their own chat). The engineer walks the
job as ``bot/demo.py`` does (``perfkit.flowrun.walk_fieldbot_job``: accept → reached the
customer → ETA → on my way → ETA → location check-in → outcome → work → parts → photo →
photos done → no extra work → submit). The customer follows the job through its per-job link,
waits for the sign-off reminder (a timer), signs off, rates, comments, and answers the
satisfaction follow-up (a second timer) with "All good".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from perfkit.fake import BenchTelegram, SimUser
from perfkit.flowrun import walk_fieldbot_job

from bot.fakeapi.state import MessageRecord

# Methods whose successful call puts something in a chat (what a person would see twice).
VISIBLE = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendLocation", "sendVoice", "sendMediaGroup"}
)


@dataclass
class Call:
    started: float  # time.monotonic() when the request reached the fake
    finished: float
    method: str
    params: dict[str, Any]
    status: int


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def delivery_key(method: str, params: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies one message for a person: (method, chat, content + buttons).

    Built the same way from a request the fake received and from an outbox row's payload, so
    deliveries can be counted against rows.
    """
    chat = str(params.get("chat_id", ""))
    if method == "answerCallbackQuery":
        return method, chat, str(params.get("callback_query_id", ""))
    content: list[Any] = []
    for name in ("text", "caption", "photo", "latitude", "longitude", "message_id"):
        if name in params and not (name == "photo" and not isinstance(params[name], str)):
            content.append((name, str(params[name])))
    if method == "sendDocument":  # the file itself: the fake stores an upload, the row bytes
        content.append(("document", "document"))
    markup = _json(params.get("reply_markup"))
    if markup:
        content.append(("markup", json.dumps(markup, sort_keys=True, ensure_ascii=False)))
    return method, chat, json.dumps(content, ensure_ascii=False)


class CrashTelegram(BenchTelegram):
    """The benchmarks' fake, recording each request's arrival time and outcome."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timed_calls: list[Call] = []

    async def execute(
        self, method: str, params: Any, *, rate_limit: bool = False
    ) -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        status, body = await super().execute(method, params, rate_limit=rate_limit)
        if method != "getUpdates":
            data = dict(params.data)
            self.timed_calls.append(Call(started, time.monotonic(), method, data, status))
        return status, body

    def sends_since(self, seconds: float) -> int:
        """Messages delivered in the last ``seconds`` (how heavy the sending is now)."""
        edge = time.monotonic() - seconds
        count = 0
        for call in reversed(self.timed_calls):
            if call.started < edge:
                break
            if call.method in VISIBLE:
                count += 1
        return count


def _text(record: MessageRecord) -> str:
    return str(record.current.get("text") or record.current.get("caption") or "")


async def walk_engineer(sim: SimUser, job_id: int, number: str) -> None:
    await walk_fieldbot_job(sim, job_id, number)


async def walk_customer(sim: SimUser, job_id: int, number: str, rating: int, comment: str) -> None:
    """From the work order to the follow-up answer, as the customer of ``number``."""

    def signoff(record: MessageRecord) -> bool:
        return number in _text(record) and bool(sim.buttons_of(record, "so:"))

    # The work order comes after the engineer's whole walk: no step timeout for that wait.
    step_timeout, sim.timeout = sim.timeout, sim.timeout * 20
    try:
        order = await sim.wait(signoff, what=f"work order of {number}")
    finally:
        sim.timeout = step_timeout
    # The sign-off reminder (a timer, SIGNOFF_REMINDER after the report) comes next: the
    # customer signs only after it, so it fires in every run whatever the timing. A second
    # copy of the work order (a send in flight at a kill, repeated) is not the reminder.
    first = _text(order)
    reminder = await sim.wait(
        lambda record: signoff(record) and _text(record) != first,
        what=f"sign-off reminder of {number}",
    )
    await sim.press(reminder, next(d for d in sim.buttons_of(reminder, "so:") if d.endswith(":ok")))
    record, _ = await sim.wait_button(f"fb:{job_id}:r:", from_start=True)
    await sim.press(record, f"fb:{job_id}:r:{rating}")
    await sim.wait_button(f"fb:{job_id}:skip", from_start=True)
    await sim.send(comment)
    await sim.wait(
        lambda r: "feedback" in _text(r) and number in _text(r), what="thanks", from_start=True
    )
    ask, _ = await sim.wait_button("fu:", from_start=True)
    good = [d for d in sim.buttons_of(ask, "fu:") if d.endswith(":ok")]
    before = len(sim.log())
    await sim.press(ask, good[0])

    def answered(record: MessageRecord) -> bool:
        # The answer edits the question, or comes as a message of its own (when the question
        # is no longer the chat's last message): either way, nothing to press any more.
        if not ask.inline_keyboard:
            return True
        later = sim.log()[before:]
        return any(r is record for r in later) and number in _text(record)

    await sim.wait(answered, what="follow-up answered", from_start=True)
