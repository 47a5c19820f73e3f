"""The bot process of the crash test: ``perfkit.botmain``'s real FieldBot (``fieldbot run``'s
settings from the environment), with two options the test needs and nothing else changed:

* ``CRASH_LEASE=<seconds>`` sets the inbox processor's and the outbox sender's lease (60 s in
  the product), so a short run need not wait out the leases a killed process leaves behind;
* ``--zygote`` imports everything once and then forks a fresh bot process for each ``fork``
  line read on stdin (each child prints ``PID <pid>`` then ``READY <url>``): a restart then
  costs the bot's own start-up, not the interpreter's and the imports' (several seconds on a
  loaded machine). The crash script uses it for ``--quick`` ("warm" restarts) and reports
  restart times as such.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta


def patch_leases(seconds: float) -> list[str]:
    """Set the lease of the inbox processor and the outbox sender; returns what was patched."""
    import bot.workers.processor as processor
    import bot.workers.sender as sender

    patched = []
    for module in (processor, sender):
        if hasattr(module, "LEASE"):
            module.LEASE = timedelta(seconds=seconds)  # type: ignore[attr-defined]
            patched.append(module.__name__)
    return patched


def _run() -> None:
    from perfkit.botmain import run_fieldbot

    asyncio.run(run_fieldbot())


def _zygote() -> None:
    import bot.bootstrap
    import bot.services.workorder_pdf

    if os.environ.get("BOT_RUNTIME", "aiogram") == "ptb":
        import bot.runtime.ptb
    else:
        import bot.runtime.aiogram  # noqa: F401
    import perfkit.botmain  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped without waiting
    print("ZYGOTE", flush=True)
    for line in sys.stdin:
        if line.strip() != "fork":
            continue
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(0)
            print(f"PID {os.getpid()}", flush=True)
            code = 0
            try:
                _run()
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)


def main() -> None:
    lease = os.environ.get("CRASH_LEASE", "")
    if lease:
        patched = patch_leases(float(lease))
        print(f"lease {lease}s patched in {', '.join(patched) or 'nothing'}", file=sys.stderr)
    if "--zygote" in sys.argv[1:]:
        _zygote()
    else:
        _run()


if __name__ == "__main__":
    main()
