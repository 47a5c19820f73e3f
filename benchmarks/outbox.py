"""The outbox against Telegram's flood limits: a burst of follow-ups plus escalations meanwhile.

The fake Bot API enforces Telegram's limits (30 messages a second overall, 1 a second per chat)
with 429 + retry_after. A burst of --followups non-urgent follow-ups to distinct customers
(``Msg(urgent=False, priority=Priority.BULK)``, written through ``uow.out.send`` in
transactions of 500) lands in the outbox at once; while the sender works through it, an urgent
escalation (``Priority.URGENT``) to one of 5 supervisors is committed every --escalate-every
seconds. Quiet hours are off; the sender runs with the production defaults SEND_GLOBAL_RATE=30,
SEND_CHAT_RATE=1, SEND_CHAT_BURST=3. FieldBot runs in this process (the sender is the subject,
and 30 messages a second cost little CPU), exactly as bootstrap builds it.

Reported: sustained send rate against the limit, 429s the fake had to give (our fault: the
sender should never provoke one), messages lost or sent twice, and escalation latency from its
commit to its arrival at the fake (target ≤ 2 s despite the backlog).

    uv run python benchmarks/outbox.py                    # 10,000 follow-ups (about 6 minutes)
    uv run python benchmarks/outbox.py --followups 1000   # a quick run
    uv run python benchmarks/outbox.py --senders 2 --database postgresql   # scale-out: two
        # worker processes' senders on one outbox (run side by side in this process), which
        # share the limit through the live_senders table
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from perfkit import dbs, machine, patches
from perfkit.fake import BenchTelegram
from perfkit.flowrun import suppress_noise
from perfkit.report import ms, percentile, table
from sqlalchemy import func, insert, select

from bot.bootstrap import FieldBot
from bot.config import load_settings
from bot.core.clock import SystemClock
from bot.core.enums import Priority
from bot.core.messages import Msg
from bot.db.models import Outbox, User
from bot.fakeapi import RateLimits, TranscriptEntry
from bot.i18n import Renderer
from bot.services.context import Services
from bot.workers.sender import OutboxSender

FOLLOWUP = "perf_followup"
ESCALATION = "perf_escalation"
TEMPLATES = {
    # Benchmark-only templates (the real follow-up and escalation texts belong to their areas
    # and may change under us); rendering goes through the same Renderer and outbox writer.
    f"{FOLLOWUP}.j2": "How did job {{ number }} go? Reply 1–5 to rate the service.",
    f"{ESCALATION}.j2": "⚠️ Escalation #{{ n }}: job {{ number }} needs a supervisor now.",
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followups", type=int, default=10_000, help="bulk follow-ups")
    parser.add_argument("--supervisors", type=int, default=5)
    parser.add_argument(
        "--senders", type=int, default=1, help="senders on the outbox, as of so many workers"
    )
    parser.add_argument("--escalate-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--runtime", default="aiogram", choices=["aiogram", "ptb"])
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-admin-url", default=dbs.PG_ADMIN_URL)
    parser.add_argument(
        "--stall", type=float, default=60.0, help="give up after this long without a delivery"
    )
    parser.add_argument(
        "--patches",
        default="",
        help="prototype fixes to apply first (perfkit/patches.py), e.g. sender_paced",
    )
    return parser.parse_args(argv)


async def seed_users(bot: FieldBot, ids: list[int], role: str) -> dict[int, int]:
    """Users bound to the fake's chats; returns {telegram id: user id}."""
    now = datetime.now(UTC)
    rows = [
        {
            "telegram_id": tid,
            "chat_id": tid,
            "role": role,
            "name": f"{role} {tid}",
            "locale": "en",
            "active": True,
            "on_duty": role == "supervisor",
            "created_at": now,
        }
        for tid in ids
    ]
    async with bot.services.uow() as uow:
        for start in range(0, len(rows), 1000):
            await uow.session.execute(insert(User), rows[start : start + 1000])
        await uow.commit()
        found = await uow.session.execute(
            select(User.telegram_id, User.id).where(User.telegram_id.in_(ids))
        )
        return {int(t): int(u) for t, u in found}


async def main(args: argparse.Namespace) -> int:
    suppress_noise()
    print(machine.describe())
    if args.patches:
        patches.apply([p for p in args.patches.split(",") if p])
        print(f"prototype fixes applied: {args.patches}")
    if args.database == "sqlite":
        db_url = dbs.sqlite_url()
    else:
        db_url = await dbs.pg_scratch_url(args.pg_admin_url)
    await dbs.reset(db_url)
    folder = Path(tempfile.mkdtemp(prefix="fieldbot-outbox-templates-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name, text in TEMPLATES.items():
        (folder / name).write_text(text + "\n")

    tg = BenchTelegram(bot_username="fieldbot_bench_bot")
    await tg.start()
    tg.limits = RateLimits(global_per_second=30, per_chat_per_second=1)
    customers = [tg.user(first_name=f"C{i}") for i in range(args.followups)]
    bosses = [tg.user(first_name=f"S{i}") for i in range(args.supervisors)]
    for user in [*customers, *bosses]:
        tg.state_for(user, None)  # the chat exists, as if the user had started the bot
    boss_chats = {u.id for u in bosses}

    settings = load_settings(
        bot_token=tg.token,
        telegram_api_url=tg.url,
        database_url=db_url,
        bot_runtime=args.runtime,
        bot_username="fieldbot_bench_bot",
        quiet_hours="off",
        log_level="WARNING",
        send_global_rate=30,
        send_chat_rate=1,
        send_chat_burst=3,
    )
    bot = FieldBot(settings, serve_http=False)
    # The other workers' senders (each its own heartbeat, buckets and leases, as in its own
    # process); FieldBot's own sender is the first.
    others = [OutboxSender(bot.services, bot.runtime) for _ in range(args.senders - 1)]
    writer = Services(
        settings=settings,
        clock=SystemClock(),
        renderer=Renderer(folder),
        sessionmaker=bot.services.sessionmaker,
        after_commit=[s.wake.set for s in [bot.sender, *others]],
    )
    await bot.start()
    other_tasks = [asyncio.create_task(s.run_forever()) for s in others]

    customer_ids = await seed_users(bot, [u.id for u in customers], "customer")
    boss_ids = await seed_users(bot, [u.id for u in bosses], "supervisor")

    followup_at: list[float] = []  # fake arrival times of follow-ups
    all_at: list[float] = []  # ... of every message (the 30/s limit counts them all)
    followup_chats: Counter[int] = Counter()
    escalation_sent: dict[int, float] = {}
    escalation_latency: dict[int, float] = {}

    def observe(entry: TranscriptEntry) -> None:
        if entry.direction != "bot" or entry.kind != "text":
            return
        all_at.append(time.monotonic())
        if entry.chat_id in boss_chats:
            n = int((entry.text or "#0:").split("#", 1)[1].split(":", 1)[0])
            if n in escalation_sent:
                escalation_latency[n] = time.monotonic() - escalation_sent[n]
        else:
            followup_at.append(time.monotonic())
            followup_chats[entry.chat_id] += 1

    tg.on_event(observe)
    done = asyncio.Event()

    async def escalate() -> None:
        n = 0
        boss_list = list(boss_ids.values())
        while not done.is_set():
            n += 1
            async with writer.uow() as uow:
                await uow.out.send(
                    Msg(
                        ESCALATION,
                        {"n": n, "number": f"FB{n:06d}"},
                        user_id=boss_list[n % len(boss_list)],
                        priority=Priority.URGENT,
                    )
                )
                await uow.commit()
            escalation_sent[n] = time.monotonic()
            try:
                async with asyncio.timeout(args.escalate_every):
                    await done.wait()
            except TimeoutError:
                pass

    t0 = time.monotonic()
    escalations = asyncio.create_task(escalate())
    ids = list(customer_ids.values())
    for start in range(0, len(ids), 500):
        async with writer.uow() as uow:
            for uid in ids[start : start + 500]:
                await uow.out.send(
                    Msg(
                        FOLLOWUP,
                        {"number": f"FB{uid:06d}"},
                        user_id=uid,
                        urgent=False,
                        priority=Priority.BULK,
                    )
                )
            await uow.commit()
    written = time.monotonic() - t0
    print(f"{len(ids)} follow-ups written through the outbox in {written:.1f}s", flush=True)

    last_count, last_change = 0, time.monotonic()
    while len(followup_chats) < len(ids):
        await asyncio.sleep(1.0)
        if len(followup_at) != last_count:
            last_count, last_change = len(followup_at), time.monotonic()
            elapsed = time.monotonic() - t0
            if int(elapsed) % 30 == 0:
                print(f"  {elapsed:.0f}s: {last_count} delivered", flush=True)
        elif time.monotonic() - last_change > args.stall:
            print(f"no delivery for {args.stall:.0f}s: giving up")
            break
    done.set()
    await escalations
    await asyncio.sleep(3)  # the last escalation's way out
    async with bot.services.uow() as uow:
        found = await uow.session.execute(
            select(Outbox.status, func.count()).group_by(Outbox.status)
        )
        statuses = {str(status): int(count) for status, count in found}
    for sender in others:
        sender.stop()
    await asyncio.gather(*other_tasks)
    await bot.stop()
    await tg.stop()

    report(args, all_at, followup_chats, escalation_sent, escalation_latency, tg, statuses)
    return 0


def report(
    args: argparse.Namespace,
    sent_at: list[float],
    chats: Counter[int],
    sent: dict[int, float],
    latency: dict[int, float],
    tg: BenchTelegram,
    statuses: dict[str, int],
) -> None:
    n = args.followups
    span = sent_at[-1] - sent_at[0] if len(sent_at) > 1 else 0.0
    rate = (len(sent_at) - 1) / span if span else 0.0
    # Busiest 1-second window, and the steady rate between the 10th and 90th percentile.
    busiest, j = 0, 0
    for i, t in enumerate(sent_at):
        while sent_at[j] <= t - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    lo, hi = int(len(sent_at) * 0.1), int(len(sent_at) * 0.9)
    steady = (hi - lo) / (sent_at[hi] - sent_at[lo]) if hi > lo + 1 else 0.0
    lat = list(latency.values())
    missing = [k for k in sent if k not in latency]
    rows = [
        ["follow-ups queued", n],
        ["delivered (distinct chats)", len(chats)],
        ["lost", n - len(chats)],
        ["sent twice", sum(1 for c in chats.values() if c > 1)],
        ["outbox rows by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))],
        ["sustained rate, first→last (msg/s)", f"{rate:.1f} ({100 * rate / 30:.0f}% of 30)"],
        ["steady rate, 10th→90th pct (msg/s)", f"{steady:.1f} ({100 * steady / 30:.0f}% of 30)"],
        ["busiest 1-s window (messages)", busiest],
        ["429s from the fake (limit hit)", len(tg.rate_limited)],
        ["sent while told to wait (retry_after ignored)", tg.retry_after_violations],
        ["escalations committed / delivered", f"{len(sent)} / {len(lat)}"],
        [
            "escalation latency p50/p95/max ms",
            "/".join(
                ms(v) for v in (percentile(lat, 50), percentile(lat, 95), percentile(lat, 100))
            ),
        ],
        ["escalations over 2 s", sum(1 for v in lat if v > 2.0) + len(missing)],
    ]
    print()
    extra = f", prototype fixes: {args.patches}" if args.patches else ""
    senders = f", {args.senders} senders" if args.senders > 1 else ""
    print(f"Outbox vs Telegram's limits ({args.runtime}, {args.database}{senders}{extra}):")
    print(table(["measure", "value"], rows))


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
