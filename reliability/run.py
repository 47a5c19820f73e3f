"""Reproduce every figure of docs/RELIABILITY.md: each fault script, then the test-based checks.

    uv run python reliability/run.py            # the sizes the doc reports (about 1.5 hours)
    uv run python reliability/run.py --quick    # small sizes, 15–20 minutes
    uv run python reliability/run.py --only crash,db_outage

Each script prints its own figures and exits 0 (pass) or 1 (fail); this runs them one after
another, then the property, authorisation, REST-fuzzing, CSV and privacy tests through
pytest, and ends with one PASS/FAIL line per check. PostgreSQL checks use scratch databases
on 127.0.0.1:5432 (each script creates and drops its own).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# name: (full run, quick run); commands run from the repository root.
CHECKS: dict[str, tuple[list[str], list[str]]] = {
    "crash": (
        ["reliability/crash.py", "--jobs", "200", "--kills", "5"],
        ["reliability/crash.py", "--quick"],
    ),
    "telegram_faults": (
        ["reliability/telegram_faults.py", "-n", "20", "--jobs", "1"],
        ["reliability/telegram_faults.py", "-n", "5", "--jobs", "1"],
    ),
    "db_outage": (
        ["reliability/db_outage.py", "-n", "10", "--jobs", "2", "--mode", "both"],
        # The outage starts 1 s into the walk, while the engineers are still walking.
        [
            *("reliability/db_outage.py", "-n", "5", "--jobs", "2"),
            *("--after", "1", "--outage", "5", "--mode", "webhook"),
        ],
    ),
    "two_workers": (
        ["reliability/two_workers.py", "-n", "10", "--jobs", "2"],
        ["reliability/two_workers.py", "-n", "5", "--jobs", "1"],
    ),
    "privacy_erase": (
        ["reliability/privacy_erase.py", "1000", "10000"],
        ["reliability/privacy_erase.py", "200"],
    ),
    "csv_import": (
        ["reliability/csv_import.py", "--rows", "100000"],
        ["reliability/csv_import.py", "--rows", "2000", "--kill-after", "10"],
    ),
}
TESTS: dict[str, list[str]] = {
    "random_input": ["tests/fuzz"],
    "authorisation_and_secrets": ["tests/security"],
    "rest_fuzzing_and_csv": [
        "tests/reliability/test_rest_fuzz.py",
        "tests/reliability/test_csv_import.py",
    ],
    "redelivery": ["tests/e2e/test_foundation.py", "tests/e2e/test_webhook.py"],
    "personal_data": ["tests/flows/test_privacy.py", "tests/unit/test_cli_privacy.py"],
}


def run(name: str, command: list[str], env: dict[str, str]) -> tuple[str, bool, float]:
    print(f"\n===== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    return name, code == 0, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", default="", help="comma-separated names of checks to run")
    parser.add_argument("--no-postgresql", action="store_true", help="skip PostgreSQL runs")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    results = []
    env = dict(os.environ)
    for name, (full, quick) in CHECKS.items():
        if only and name not in only:
            continue
        if args.no_postgresql and name in ("db_outage", "two_workers"):
            continue
        command = [sys.executable, *(quick if args.quick else full)]
        results.append(run(name, command, env))
    for name, paths in TESTS.items():
        if only and name not in only:
            continue
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *paths]
        results.append(run(f"{name} (SQLite)", pytest, env))
        if not args.no_postgresql:
            pg_env = {**env, "FIELDBOT_TEST_DATABASE_URL": PG_URL}
            results.append(run(f"{name} (PostgreSQL)", pytest, pg_env))
    print("\n===== summary")
    for name, ok, seconds in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({seconds:.0f} s)")
    sys.exit(0 if all(ok for _, ok, _ in results) else 1)


if __name__ == "__main__":
    main()
