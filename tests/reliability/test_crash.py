"""kill -9 under load: the crash script's quick mode passes (reliability/crash.py).

The script runs the same small seeded load twice against the real bot in a subprocess: once
untouched, once killed with SIGKILL and restarted; it exits 0 only when every job ends in the
same state, every timer fired once, no message was lost and every duplicate delivery is of a
message that was in flight at a kill. The full-size run with figures is
``uv run python reliability/crash.py`` (docs/RELIABILITY.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    bool(PG_URL),
    reason="the crash script uses a SQLite database of its own; the SQLite run covers it",
)
def test_kill_9_under_load_loses_nothing_and_diverges_nowhere() -> None:
    command = [
        sys.executable,
        str(ROOT / "reliability" / "crash.py"),
        "--quick",
        "--jobs",
        "4",
        "--kills",
        "2",
        "--seed",
        "3",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "\nPASS" in done.stdout, report
    assert re.search(r"kills \(planned / done\)\s+2 / 2", done.stdout), report  # both happened
