"""Run the fake Telegram server interactively: ``python -m bot.fakeapi --port 8081``.

Point a bot at the printed URL/token, then type as the user: plain text (or /commands) is
sent as a message; ``!press LABEL``, ``!tap LABEL``, ``!loc LAT LON``, ``!contact [PHONE]``,
``!photo`` and ``!quit`` perform the other actions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .render import format_entry
from .server import FakeTelegram
from .users import FakeUser


async def _act(user: FakeUser, line: str) -> bool:
    """Perform one typed action; False means quit."""
    command, _, rest = line.partition(" ")
    if command == "!quit":
        return False
    if command == "!press":
        await user.press(rest)
    elif command == "!tap":
        await user.tap(rest)
    elif command == "!loc":
        lat, lon = (float(x) for x in rest.split())
        await user.share_location(lat, lon)
    elif command == "!contact":
        await user.share_contact(rest or None)
    elif command == "!photo":
        await user.send_photo()
    else:
        await user.send(line)
    return True


async def main(argv: list[str] | None = None) -> None:
    """Serve until ``!quit`` / EOF, echoing the conversation."""
    parser = argparse.ArgumentParser(prog="python -m bot.fakeapi")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=None)
    parser.add_argument("--name", default="Alice", help="first name of the simulated user")
    args = parser.parse_args(argv)
    async with FakeTelegram(args.host, args.port, args.token) as tg:
        tg.on_event(lambda entry: print(format_entry(entry), flush=True))
        user = tg.user(first_name=args.name)
        print(f"fake Telegram at {tg.url}\ntoken {tg.token}\ntype messages as {args.name}:")
        loop = asyncio.get_running_loop()
        while True:
            raw = await loop.run_in_executor(None, sys.stdin.readline)
            if raw == "":
                break
            line = raw.strip()
            if not line:
                continue
            try:
                if not await _act(user, line):
                    break
            except (AssertionError, ValueError) as exc:
                print(f"! {exc}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
