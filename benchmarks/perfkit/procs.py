"""Bot processes under test: started apart from the driver (the fake Bot API and the simulated
users), optionally pinned to one CPU, so the bot's CPU time is its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_self(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


class BotProcess:
    """``python -m perfkit.botmain`` with ``PERF_KIND=kind`` and the given settings as env."""

    def __init__(
        self, kind: str, settings: dict[str, Any], *, cpu: int | None = None, name: str = "bot"
    ) -> None:
        self.kind = kind
        self.settings = settings
        self.cpu = cpu
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.folder = Path(tempfile.mkdtemp(prefix=f"fieldbot-{name}-"))
        self.log_path = self.folder / "stderr.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "PERF_"))}
        env.update({k.upper(): str(v) for k, v in self.settings.items()})
        env["PERF_KIND"] = self.kind
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), env.get("PYTHONPATH", ""), str(ROOT)) if p
        )
        return env

    async def start(self, timeout: float = 240.0) -> None:
        cpu = self.cpu

        def preexec() -> None:  # runs in the child before exec: every thread inherits it
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        with self.log_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "perfkit.botmain",
                cwd=self.folder,  # no stray .env from the developer's folder
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=preexec,
            )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self.proc.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError(f"{self.name} exited: {self.tail()}")
                    if line.startswith("READY"):
                        self.url = line.split()[1]
                        return
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"{self.name} did not start: {self.tail()}") from None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self, grace: float = 20.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Profiler:
    """py-spy sampling one process into collapsed stacks (``--format raw``)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def executable() -> str | None:
        beside = Path(sys.executable).parent / "py-spy"
        return str(beside) if beside.exists() else shutil.which("py-spy")

    async def start(self) -> None:
        exe = self.executable()
        if exe is None:
            raise RuntimeError("py-spy is not installed: uv pip install py-spy")
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--nonblocking",
            "--threads",
            "--full-filenames",
            "--output",
            str(self.out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
