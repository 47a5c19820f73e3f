from datetime import time, timedelta

import pytest

from bot.config import SettingsError, load_settings
from bot.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("45", 45),
        ("500ms", 0.5),
    ],
)
def test_durations_are_written_like_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5x", "m15", "15 minutes", "-5m", "1h-5m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert parse_duration(format_duration(timedelta(hours=26, seconds=5))) == timedelta(
        hours=26, seconds=5
    )


def test_every_deadline_is_a_setting_with_the_domain_default(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.offer_timeout == timedelta(minutes=10)
    assert s.contact_deadline == timedelta(minutes=15)
    assert s.arrival_reminder_lead == timedelta(minutes=30)
    assert s.checkin_radius == 500
    assert s.complaint_response_sla == timedelta(minutes=30)
    assert s.complaint_resolution_sla == timedelta(hours=24)
    assert s.complaint_pattern_window == timedelta(days=90)
    assert s.quiet_hours == (time(21), time(8))
    assert s.timezone == "Asia/Shanghai"
    assert s.bot_runtime == "aiogram"
    assert s.database_url.startswith("sqlite+aiosqlite:///")


def test_settings_come_from_the_environment_and_dotenv(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OFFER_TIMEOUT=90s\nTIMEZONE=Europe/Berlin\n")
    monkeypatch.setenv("CONTACT_DEADLINE", "2m")
    s = load_settings()
    assert s.offer_timeout == timedelta(seconds=90)
    assert s.contact_deadline == timedelta(minutes=2)
    assert s.timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("OFFER_TIMEOUT", "10x", "OFFER_TIMEOUT"),
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("BOT_RUNTIME", "telethon", "BOT_RUNTIME"),
        ("HTTP_PORT", "eighty", "HTTP_PORT"),
        ("QUIET_HOURS", "late", "QUIET_HOURS"),
        ("TELEGRAM_API_URL", "api.telegram.org", "TELEGRAM_API_URL"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(monkeypatch, tmp_path, name, value, fragment) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_plain_urls_get_async_drivers(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(database_url="postgresql://u@h/db").database_url == (
        "postgresql+asyncpg://u@h/db"
    )
    assert load_settings(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"
