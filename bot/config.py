"""Settings, read from the environment and ``.env`` (see ``.env.example``)."""

from __future__ import annotations

import re
import zoneinfo
from datetime import time, timedelta
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.durations import parse_duration
from bot.db.engine import async_url

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

LOCALES = ("en", "zh_Hans")


class SettingsError(Exception):
    """A setting is wrong; the message names it in one line."""


def _parse_quiet_hours(value: object) -> tuple[time, time] | None:
    if value is None or isinstance(value, tuple):
        return value
    text = str(value).strip()
    if text.lower() in {"", "off", "none"}:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", text)
    if not match:
        raise ValueError("write quiet hours as HH:MM-HH:MM, for example 21:00-08:00, or off")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError("quiet hours must be valid times of day")
    return time(h1, m1), time(h2, m2)


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _parse_cron(value: object) -> str:
    """A crontab line (``30 8 * * *``); ``off`` disables. Day-of-week numbers are crontab's
    (0 or 7 = Sunday), turned into names because APScheduler counts from Monday."""
    text = " ".join(str(value or "").split())
    if text.lower() in {"", "off", "none"}:
        return ""
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError("write a crontab line with 5 fields, for example 30 8 * * *, or off")
    fields[4] = re.sub(r"(?<![/\d])\d+", lambda m: _DAYS[int(m.group()) % 7], fields[4].lower())
    text = " ".join(fields)
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a crontab line ({exc})") from None
    return text


Cron = Annotated[str, BeforeValidator(_parse_cron)]


class Settings(BaseSettings):
    """Every knob of fieldbot; deadlines are durations such as ``90s``, ``15m``, ``2h``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Telegram
    bot_token: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    bot_runtime: Literal["aiogram", "ptb"] = "aiogram"
    bot_username: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""

    # Storage and HTTP
    database_url: str = "sqlite+aiosqlite:///fieldbot.db"
    api_token: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # People and places
    timezone: str = "Asia/Shanghai"
    default_locale: Literal["en", "zh_Hans"] = "en"
    invite_ttl: Duration = timedelta(days=7)
    show_engineer_phone: bool = False
    phone_region: str = "CN"

    # Deadlines (DOMAIN.md)
    offer_timeout: Duration = timedelta(minutes=10)
    contact_deadline: Duration = timedelta(minutes=15)
    arrival_reminder_lead: Duration = timedelta(minutes=30)
    checkin_radius: float = Field(default=500.0, gt=0)
    signoff_reminder: Duration = timedelta(hours=2)
    signoff_escalation: Duration = timedelta(hours=24)
    followup_delay: Duration = timedelta(days=1)
    followup_monthly_months: int = Field(default=12, ge=0, le=1200)
    followup_later_months: int = Field(default=3, ge=1, le=120)
    outreach_cron: Cron = "0 10 1 12 *"
    complaint_response_sla: Duration = timedelta(minutes=30)
    complaint_resolution_sla: Duration = timedelta(hours=24)
    complaint_urgent_resolution_sla: Duration = timedelta(hours=4)
    escalation_step: Duration = timedelta(hours=1)
    complaint_pattern_window: Duration = timedelta(days=90)
    quiet_hours: Annotated[tuple[time, time] | None, BeforeValidator(_parse_quiet_hours)] = (
        time(21, 0),
        time(8, 0),
    )

    # Reports (cron lines in TIMEZONE)
    report_daily_cron: Cron = "30 8 * * *"
    report_weekly_cron: Cron = "0 16 * * fri"
    report_monthly_cron: Cron = "0 9 1 * *"

    # Retention (DOMAIN.md §7): handled updates and sent messages are pruned daily
    inbox_retention: Duration = timedelta(days=7)
    outbox_retention: Duration = timedelta(days=30)
    retention_cron: Cron = "15 3 * * *"

    # Machinery
    scheduler_interval: Duration = timedelta(seconds=1)
    timer_max_attempts: int = Field(default=5, ge=1)
    timer_retry_backoff: Duration = timedelta(seconds=10)
    inbox_max_attempts: int = Field(default=3, ge=1)
    send_global_rate: float = Field(default=30.0, gt=0)
    send_chat_rate: float = Field(default=1.0, gt=0)
    send_chat_burst: int = Field(default=3, ge=1)
    send_max_attempts: int = Field(default=8, ge=1)
    log_level: str = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use a name like Asia/Shanghai"
            ) from None
        return value

    @field_validator("inbox_retention", "outbox_retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        # A redelivered update is recognised by its inbox row, and an edit finds its message
        # by the outbox row: neither may go within the day.
        if value < timedelta(days=1):
            raise ValueError("keep rows for at least 1d (a day)")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        value = async_url(value)
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("telegram_api_url", "webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into one line that names the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"setting {name}: {message}") from None
