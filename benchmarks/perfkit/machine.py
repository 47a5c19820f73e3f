"""The machine and its processes, read from /proc (Linux): CPU model, RAM, CPU time, RSS."""

from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def describe() -> str:
    """One line: date, cores, CPU, RAM, Python."""
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · {cpu_model()} · "
        f"{ram_gib():.0f} GiB RAM · Python {sys.version.split()[0]} · {platform.system()}"
    )


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pid: int) -> float:
    """Resident set size in MiB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (e.g. the PostgreSQL server's backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / TICKS, total / TICKS


@dataclass
class CpuMeter:
    """CPU seconds used between ``start()`` and ``stop()`` by given pids, by every process with
    a given command name (``named``, e.g. the PostgreSQL server's backends, counted per pid:
    a backend that exits in between loses its share), by us, and by the whole machine."""

    pids: dict[str, int]
    named: dict[str, str] | None = None

    def start(self) -> None:
        self._start = self._sample()
        self._named_start = self._named()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        out = {k: end[k] - self._start.get(k, 0.0) for k in end}
        for group, per_pid in self._named().items():
            before = self._named_start.get(group, {})
            out[group] = sum(cpu - before.get(pid, 0.0) for pid, cpu in per_pid.items())
        return out

    def _named(self) -> dict[str, dict[int, float]]:
        return {
            group: {pid: process_cpu(pid) for pid in pids_named(comm)}
            for group, comm in (self.named or {}).items()
        }

    def _sample(self) -> dict[str, float]:
        sample = {name: process_cpu(pid) for name, pid in self.pids.items()}
        sample["driver"] = self_cpu()
        busy, total = machine_busy()
        sample["machine_busy"] = busy
        sample["machine_total"] = total
        return sample
