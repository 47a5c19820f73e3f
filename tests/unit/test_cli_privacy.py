"""`fieldbot customer export|erase`: how the operator names a customer, what the commands say,
and their exit codes (the data itself is checked in tests/flows/test_privacy.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot import cli as cli_module
from bot.cli import main as cli

JOB = [
    "dispatch", "create", "--customer", "Li Na Household", "--contact-name", "Li Na",
    "--contact-phone", "+86 138 0013 8000", "--address", "88 Century Avenue",
    "--equipment-model", "CH-200", "--service-type", "repair",
    "--window-start", "2026-12-01T09:00", "--window-end", "2026-12-01T12:00", "--json",
]  # fmt: skip


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "privacy.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    return path


def run(*args: str, **kw: Any) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)


def new_job(database: Path, *, status: str = "closed", **changes: str) -> str:
    created = run(*JOB)
    assert created.exit_code == 0, created.output
    number = str(json.loads(created.output)["number"])
    with sqlite3.connect(database) as db:
        db.execute("UPDATE dispatches SET status = ? WHERE number = ?", (status, number))
        for column, value in changes.items():
            db.execute(f"UPDATE dispatches SET {column} = ? WHERE number = ?", (value, number))
    return number


def contact_of(database: Path, number: str) -> tuple[str, str]:
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT contact_name, contact_phone FROM dispatches WHERE number = ?", (number,)
        ).fetchone()
    return row[0], row[1]


def test_export_prints_json_or_writes_a_private_file(database: Path) -> None:
    number = new_job(database)
    printed = run("customer", "export", "13800138000")
    assert printed.exit_code == 0, printed.output
    data = json.loads(printed.output)
    assert [j["number"] for j in data["jobs"]] == [number]
    assert data["jobs"][0]["contact_name"] == "Li Na"
    by_job = run("customer", "export", "--job", number.lower(), "-o", "me.json")
    assert by_job.exit_code == 0, by_job.output
    assert "1 jobs" in by_job.output and "me.json" in by_job.output
    assert json.loads(Path("me.json").read_text())["jobs"] == data["jobs"]
    assert Path("me.json").stat().st_mode & 0o077 == 0


def test_unknown_ambiguous_and_staff_are_errors(database: Path) -> None:
    new_job(database)
    unknown = run("customer", "export", "+86 137 1111 2222")
    assert unknown.exit_code == 1 and "no customer data found" in unknown.output
    assert run("customer", "export", "FB999999").exit_code == 1
    twice = run("customer", "export", "13800138000", "--phone", "13800138000")
    assert twice.exit_code == 1 and "once" in twice.output
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO users (telegram_id, chat_id, role, name, active, on_duty, created_at)"
            " VALUES (13800138000, 13800138000, 'customer', 'Somebody', 1, 0, '2026-11-30')"
        )
        db.execute(
            "INSERT INTO users (telegram_id, chat_id, role, name, active, on_duty, created_at)"
            " VALUES (55, 55, 'engineer', 'Wang Wei', 1, 0, '2026-11-30')"
        )
    ambiguous = run("customer", "erase", "13800138000", "--yes")
    assert ambiguous.exit_code == 1
    assert "--phone 13800138000" in ambiguous.output
    assert "--telegram-id 13800138000" in ambiguous.output
    staff = run("customer", "export", "--telegram-id", "55")
    assert staff.exit_code == 1 and "staff" in staff.output


def test_erase_refuses_open_jobs_without_force_then_is_idempotent(database: Path) -> None:
    number = new_job(database, status="accepted")
    refused = run("customer", "erase", "--phone", "+8613800138000", "--yes")
    assert refused.exit_code == 1
    assert f"open jobs {number}" in refused.output and "--force" in refused.output
    assert contact_of(database, number) == ("Li Na", "+8613800138000")

    done = run("customer", "erase", "--phone", "+8613800138000", "--yes", "--force")
    assert done.exit_code == 0, done.output
    assert "erased customer" in done.output and "jobs (contact): 1" in done.output
    assert "13800138000" not in done.output  # the summary masks the number
    name, phone = contact_of(database, number)
    assert name.startswith("erased customer") and phone == ""

    again = run("customer", "erase", "--phone", "+8613800138000", "--yes")
    assert again.exit_code == 0 and "nothing left to erase" in again.output
    by_job = run("customer", "erase", number, "--yes")
    assert by_job.exit_code == 0 and "nothing left to erase" in by_job.output


def test_erase_asks_first_and_a_dry_run_changes_nothing(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = new_job(database)
    dry = run("customer", "erase", number, "--dry-run")
    assert dry.exit_code == 0 and "would change" in dry.output and "customer units: 1" in dry.output
    no_tty = run("customer", "erase", number)
    assert no_tty.exit_code == 1 and "add --yes" in no_tty.output
    assert contact_of(database, number)[0] == "Li Na"

    monkeypatch.setattr(cli_module, "_interactive", lambda: True)
    declined = run("customer", "erase", number, input="n\n")
    assert declined.exit_code == 1 and "nothing erased" in declined.output
    assert contact_of(database, number)[0] == "Li Na"
    confirmed = run("customer", "erase", number, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert contact_of(database, number)[0].startswith("erased customer")
