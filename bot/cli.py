"""The ``fieldbot`` command: run, demo, db, staff, dispatch."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.config import Settings, SettingsError, load_settings
from bot.logs import setup_logging

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        click.echo(f"fieldbot: {exc}", err=True)
        sys.exit(2)


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    async def runner() -> T:
        return await coro_factory()

    return asyncio.run(runner())


@click.group()
def main() -> None:
    """fieldbot: a chat-first field-service desk on Telegram."""


@main.command()
def run() -> None:
    """Run the bot (polling, or webhook when WEBHOOK_URL is set) and its HTTP app."""
    settings = _settings()
    setup_logging(settings.log_level)
    if not settings.bot_token:
        click.echo(
            "fieldbot: setting BOT_TOKEN: required to run; try `fieldbot demo` instead", err=True
        )
        sys.exit(2)
    if settings.webhook_url and not settings.webhook_secret:
        click.echo("fieldbot: setting WEBHOOK_SECRET: required when WEBHOOK_URL is set", err=True)
        sys.exit(2)
    from bot.bootstrap import FieldBot, SchemaBehind

    bot = FieldBot(settings)
    try:
        asyncio.run(bot.run_forever())
    except SchemaBehind as exc:
        click.echo(f"fieldbot: {exc}", err=True)
        sys.exit(2)
    except RuntimeError as exc:
        click.echo(f"fieldbot: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


@main.command()
def demo() -> None:
    """Offline demo: a fake Telegram, the real bot, a whole job, printed as it happens."""
    from bot.demo import run_demo

    setup_logging("WARNING")
    sys.exit(asyncio.run(run_demo()))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (to the newest revision by default)."""
    settings = _settings()
    from bot.db import migrate
    from bot.db.engine import make_engine

    async def go() -> None:
        engine = make_engine(settings.database_url)
        try:
            await migrate.upgrade(engine, revision)
        finally:
            await engine.dispose()

    _run(go)
    click.echo(f"database upgraded to {revision}")


async def _with_services(settings: Settings, body: Callable[[Any], Awaitable[T]]) -> T:
    from bot.bootstrap import build_services, prepare_database

    services = build_services(settings)
    engine = services.sessionmaker.kw["bind"]
    try:
        await prepare_database(engine)
        return await body(services)
    finally:
        await engine.dispose()


def _fail_fields(errors: list[tuple[str, str]], as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps({"ok": False, "errors": [{"field": f, "message": m} for f, m in errors]})
        )
    else:
        for field, message in errors:
            click.echo(f"error: {field}: {message}", err=True)
    sys.exit(1)


@main.group()
def staff() -> None:
    """Staff members and their invite links."""


@staff.command("add")
@click.option(
    "--role", required=True, type=click.Choice(["engineer", "supervisor", "manager", "dispatcher"])
)
@click.option("--name", required=True)
@click.option("--phone", default=None)
@click.option("--skills", default="", help="Comma-separated: repair,installation,...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def staff_add(role: str, name: str, phone: str | None, skills: str, as_json: bool) -> None:
    """Create a staff record and print its single-use invite link."""
    settings = _settings()
    from bot.services.errors import FieldError
    from bot.services.staff import add_staff

    async def body(services: Any) -> dict[str, Any]:
        async with services.uow() as uow:
            new = await add_staff(
                uow,
                role=role,
                name=name,
                phone=phone,
                skills=[s for s in skills.split(",") if s.strip()],
            )
            await uow.commit()
            return {
                "id": new.user.id,
                "staff_no": new.user.staff_no,
                "role": new.user.role,
                "name": new.user.name,
                "code": new.code,
                "link": new.link,
                "skills": [q.skill for q in new.user.qualifications],
            }

    try:
        out = asyncio.run(_with_services(settings, body))
    except FieldError as exc:
        _fail_fields(exc.errors, as_json)
        return
    if as_json:
        click.echo(json.dumps({"ok": True, **out}, ensure_ascii=False))
    else:
        click.echo(f"{out['role']} {out['name']} ({out['staff_no']}) added.")
        click.echo(f"invite link (single use): {out['link']}")
        click.echo(f"invite code: {out['code']}")


@main.group()
def dispatch() -> None:
    """Dispatches (jobs)."""


@dispatch.command("create")
@click.option("--customer", required=True, help="Customer unit name")
@click.option("--contact-name", required=True)
@click.option("--contact-phone", required=True)
@click.option("--address", required=True)
@click.option("--latitude", type=float, default=None)
@click.option("--longitude", type=float, default=None)
@click.option("--equipment-model", required=True)
@click.option("--quantity", default="1")
@click.option("--serials", default="", help="Separated by ; or ,")
@click.option("--service-type", required=True, help="installation, startup, repair or maintenance")
@click.option("--window-start", required=True, help="Site-local time, e.g. 2026-12-01T09:00")
@click.option("--window-end", required=True)
@click.option("--engineer", default=None, help="Staff number of the engineer to offer it to")
@click.option("--description", default=None)
@click.option("--ref", default=None, help="Your own reference (creating twice does nothing)")
@click.option("--json", "as_json", is_flag=True)
def dispatch_create(as_json: bool, **fields: Any) -> None:
    """Create a dispatch; it is offered to an engineer at once (by the running bot)."""
    settings = _settings()
    from bot.flows.intake import create_dispatch
    from bot.services.customers import customer_link
    from bot.services.errors import FieldError

    raw = {k: v for k, v in fields.items() if v not in (None, "")}

    async def body(services: Any) -> dict[str, Any]:
        async with services.uow() as uow:
            created = await create_dispatch(uow, raw, source="cli")
            link = await customer_link(uow, created)
            await uow.commit()
            return {
                "id": created.id,
                "number": created.number,
                "status": created.status,
                "customer_link": link,
            }

    try:
        out = asyncio.run(_with_services(settings, body))
    except FieldError as exc:
        _fail_fields(exc.errors, as_json)
        return
    if as_json:
        click.echo(json.dumps({"ok": True, **out}))
    else:
        click.echo(f"dispatch {out['number']} created (id {out['id']}, {out['status']}).")
        click.echo(f"customer link: {out['customer_link']}")


@dispatch.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def dispatch_import(file: Path, as_json: bool) -> None:
    """Import dispatches from a CSV file (UTF-8, header row with the field names).

    Good rows are imported, bad ones reported with their line numbers; running it again on
    the same file imports nothing twice. The file is streamed and committed in batches.
    """
    settings = _settings()
    from bot.flows.intake import import_csv

    report = asyncio.run(_with_services(settings, lambda services: import_csv(services, file)))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": not report.fatal and not report.errors,
                    "fatal": report.fatal or None,
                    "rows": report.rows,
                    "created": report.created,
                    "skipped": [{"line": line, "number": n} for line, n in report.skipped],
                    "errors": [{"line": line, "reason": r} for line, r in report.errors],
                    "notices": [{"line": line, "notice": n} for line, n in report.notices],
                },
                ensure_ascii=False,
            )
        )
    else:
        if report.fatal:
            click.echo(f"error: {file.name}: {report.fatal}", err=True)
        for line, reason in report.errors:
            click.echo(f"error: line {line}: {reason}", err=True)
        for line, notice in report.notices:
            click.echo(f"warning: line {line}: {notice}", err=True)
        shown = 20
        for line, number in report.skipped[:shown]:
            click.echo(f"line {line}: already imported as {number}")
        if len(report.skipped) > shown:
            click.echo(f"... and {len(report.skipped) - shown} more rows already imported")
        click.echo(
            f"{len(report.created)} imported, {len(report.skipped)} already there, "
            f"{len(report.errors)} rejected"
        )
    sys.exit(1 if report.fatal or report.errors else 0)


@main.group()
def duty() -> None:
    """The duty roster and the holiday calendar (DOMAIN.md §5)."""


@duty.command("set")
@click.option("--staff", "staff_no", required=True, help="Staff number of the supervisor (S0001)")
@click.option("--from", "starts", required=True, help="Start, e.g. 2026-12-01T08:00 (TIMEZONE)")
@click.option("--to", "ends", required=True, help="End, e.g. 2026-12-01T20:00")
@click.option("--holiday", is_flag=True, help="A shift of the holiday roster")
@click.option("--json", "as_json", is_flag=True)
def duty_set(staff_no: str, starts: str, ends: str, holiday: bool, as_json: bool) -> None:
    """Put a supervisor on duty from --from to --to."""
    settings = _settings()
    from bot.services import roster
    from bot.services.errors import FieldError

    async def body(services: Any) -> dict[str, Any]:
        async with services.uow() as uow:
            shift, created = await roster.add_shift(
                uow, staff_no=staff_no, starts=starts, ends=ends, holiday=holiday
            )
            await uow.commit()
            return {
                "id": shift.id,
                "created": created,
                "staff": staff_no.upper(),
                "from": shift.starts_at.isoformat(),
                "to": shift.ends_at.isoformat(),
                "holiday": shift.holiday,
            }

    try:
        out = asyncio.run(_with_services(settings, body))
    except FieldError as exc:
        _fail_fields(exc.errors, as_json)
        return
    if as_json:
        click.echo(json.dumps({"ok": True, **out}))
    else:
        kind = "holiday shift" if out["holiday"] else "shift"
        verb = "added" if out["created"] else "already on the roster"
        click.echo(f"{kind} #{out['id']} {out['staff']} {starts} – {ends} {verb}.")


@duty.command("list")
@click.option("--days", default=7, type=click.IntRange(1, 366), help="How far ahead")
def duty_list(days: int) -> None:
    """Shifts from now on, and the holidays ahead."""
    settings = _settings()
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from bot.services import roster

    zone = ZoneInfo(settings.timezone)

    async def body(services: Any) -> list[str]:
        async with services.uow() as uow:
            now = uow.clock.now()
            lines = []
            for s in await roster.shifts(uow, since=now, until=now + timedelta(days=days)):
                start = s.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
                end = s.ends_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
                tag = " holiday" if s.holiday else ""
                lines.append(f"#{s.id} {start} – {end} {s.staff_no} {s.name}{tag}")
            for h in await roster.holidays(uow, since=roster.local_date(uow, now)):
                lines.append(f"holiday {h.day.isoformat()} {h.name}".rstrip())
            return lines

    lines = asyncio.run(_with_services(settings, body))
    click.echo("\n".join(lines) if lines else "no shifts planned")


@duty.command("remove")
@click.argument("shift_id", type=int)
def duty_remove(shift_id: int) -> None:
    """Take a shift off the roster."""
    settings = _settings()
    from bot.services import roster

    async def body(services: Any) -> bool:
        async with services.uow() as uow:
            removed = await roster.remove_shift(uow, shift_id)
            await uow.commit()
            return removed

    if not asyncio.run(_with_services(settings, body)):
        click.echo(f"error: no shift #{shift_id}", err=True)
        sys.exit(1)
    click.echo(f"shift #{shift_id} removed.")


@duty.command("holiday")
@click.argument("day")
@click.option("--name", default="", help="e.g. National Day")
@click.option("--remove", is_flag=True, help="Take the date off the holiday calendar")
def duty_holiday(day: str, name: str, remove: bool) -> None:
    """Add a date (2026-10-01) to the holiday calendar: that day uses the holiday roster."""
    settings = _settings()
    from bot.services import roster
    from bot.services.errors import FieldError

    async def body(services: Any) -> str:
        async with services.uow() as uow:
            if remove:
                done = await roster.remove_holiday(uow, day)
                await uow.commit()
                return (
                    f"{day} removed from the holiday calendar."
                    if done
                    else f"{day}: no such holiday."
                )
            _, created = await roster.add_holiday(uow, day=day, name=name)
            await uow.commit()
            return f"{day} {'added to' if created else 'already in'} the holiday calendar."

    try:
        click.echo(asyncio.run(_with_services(settings, body)))
    except FieldError as exc:
        _fail_fields(exc.errors, False)


@main.group()
def report() -> None:
    """Reports: the daily digest, the weekly report, the monthly supervision report."""


@report.command("show")
@click.argument("kind", type=click.Choice(["daily", "weekly", "monthly"]))
@click.argument("period", default="")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--locale", default="en", type=click.Choice(["en", "zh_Hans"]))
def report_show(kind: str, period: str, csv_path: Path | None, locale: str) -> None:
    """Print a report (PERIOD: 2026-11-30, 2026-W48, 2026-11; default as scheduled)."""
    settings = _settings()
    from bot.flows import reports
    from bot.services.errors import DomainError

    async def body(services: Any) -> tuple[str, list[list[object]]]:
        async with services.uow() as uow:
            when = reports.parse_period(kind, period, uow.clock.now(), settings.timezone)
            figures = await reports.gather(uow, when)
            text = reports.render_text(uow, figures, locale, settings.timezone)
            return text, reports.csv_rows(uow, figures, locale, settings.timezone)

    try:
        text, rows = asyncio.run(_with_services(settings, body))
    except DomainError as exc:
        click.echo(f"error: period: {period!r} is not a {kind} period ({exc.template})", err=True)
        sys.exit(1)
    click.echo(text)
    if csv_path is not None:
        from bot.services.report_files import csv_bytes

        csv_path.write_bytes(csv_bytes(rows))
        click.echo(f"CSV written to {csv_path}")


@report.command("send")
@click.argument("kind", type=click.Choice(["daily", "weekly", "monthly"]))
def report_send(kind: str) -> None:
    """Send the scheduled report now (once per period: a second send does nothing)."""
    settings = _settings()
    from bot.flows import reports

    sent = asyncio.run(_with_services(settings, lambda s: reports.run_scheduled(s, kind)))
    click.echo(
        f"{kind} report queued." if sent else f"{kind} report for this period was already sent."
    )


from bot.cli_calendar import calendar  # noqa: E402  (area: complaints)

main.add_command(calendar)


@main.group()
def org() -> None:
    """The organisation's own settings."""


@org.command("set")
@click.option("--name", default=None, help="The company's name.")
@click.option(
    "--supervisors-chat",
    "supervisors_chat",
    default=None,
    help="Telegram id of the supervisors' group chat (complaint alerts go there); 'none' clears.",
)
def org_set(name: str | None, supervisors_chat: str | None) -> None:
    """Set the company's name or the supervisors' group chat."""
    settings = _settings()
    from bot.services.staff import organisation

    chat_id: int | None = None
    if supervisors_chat is not None and supervisors_chat.lower() != "none":
        try:
            chat_id = int(supervisors_chat)
        except ValueError:
            click.echo(
                "error: --supervisors-chat: a Telegram chat id is a number, such as -1001234567890",
                err=True,
            )
            sys.exit(1)

    async def body(services: Any) -> dict[str, Any]:
        async with services.uow() as uow:
            current = await organisation(uow)
            if name is not None:
                if not name.strip() or len(name) > 200:
                    raise click.BadParameter("must be 1 to 200 characters", param_hint="--name")
                current.name = name.strip()
            if supervisors_chat is not None:
                current.supervisors_chat_id = chat_id
            await uow.commit()
            return {"name": current.name, "supervisors_chat": current.supervisors_chat_id}

    out = asyncio.run(_with_services(settings, body))
    click.echo(f"organisation: {out['name']}; supervisors' chat: {out['supervisors_chat']}")


# ---- customer: one customer's personal data (issue 8 item 12) ----------------------------------


@main.group()
def customer() -> None:
    """One customer's personal data: export it, or erase it keeping the job history."""


def _who_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.argument("who", required=False),
            click.option("--phone", default=None, help="The customer's phone number"),
            click.option("--job", default=None, help="A job number of theirs (FB000123)"),
            click.option("--telegram-id", type=int, default=None, help="Their Telegram user id"),
        ]
    ):
        command = option(command)
    return command


def _who(who: str | None, phone: str | None, job: str | None, telegram_id: int | None) -> Any:
    """A coroutine factory's argument: identify the customer inside a unit of work."""
    from bot.services import privacy

    async def find(uow: Any) -> Any:
        return await privacy.identify(uow, who, phone=phone, job=job, telegram_id=telegram_id)

    return find


@customer.command("export")
@_who_options
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON here (readable by you only) instead of printing it",
)
def customer_export(
    who: str | None,
    phone: str | None,
    job: str | None,
    telegram_id: int | None,
    output: Path | None,
) -> None:
    """Everything held about one customer, as JSON. WHO: a phone number, a job number
    (FB000123) or a Telegram user id."""
    settings = _settings()
    from bot.services import privacy

    find = _who(who, phone, job, telegram_id)

    async def body(services: Any) -> dict[str, Any]:
        async with services.uow() as uow:
            return await privacy.export(uow, await find(uow))

    try:
        data = asyncio.run(_with_services(settings, body))
    except privacy.PrivacyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output is None:
        click.echo(text)
        return
    output.touch(mode=0o600)
    output.write_text(text + "\n", encoding="utf-8")
    click.echo(
        f"{data['identified_by']}: {len(data['customer_records'])} customer records, "
        f"{len(data['jobs'])} jobs, {len(data['complaints'])} complaints written to {output}"
    )


def _interactive() -> bool:
    return sys.stdin.isatty()


@customer.command("erase")
@_who_options
@click.option("--yes", is_flag=True, help="Do not ask: erase now")
@click.option("--force", is_flag=True, help="Erase even while a job or complaint is open")
@click.option("--dry-run", is_flag=True, help="Say what would be erased; change nothing")
def customer_erase(
    who: str | None,
    phone: str | None,
    job: str | None,
    telegram_id: int | None,
    yes: bool,
    force: bool,
    dry_run: bool,
) -> None:
    """Erase one customer's personal data; jobs, complaints and ratings stay, anonymised.

    WHO: a phone number, a job number (FB000123) or a Telegram user id."""
    settings = _settings()
    from bot.services import privacy

    find = _who(who, phone, job, telegram_id)

    async def body(services: Any, commit: bool) -> tuple[str, privacy.Erasure]:
        async with services.uow() as uow:
            subject = await find(uow)
            done = await privacy.erase(uow, subject, force=force)
            if commit and not done.nothing_left:
                await uow.commit()
            return subject.identified_by, done

    def attempt(commit: bool) -> tuple[str, privacy.Erasure]:
        try:
            return asyncio.run(_with_services(settings, lambda s: body(s, commit)))
        except privacy.NotFound as exc:
            click.echo(f"nothing left to erase: {exc}")
            sys.exit(0)
        except privacy.PrivacyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    def summary(erasure: privacy.Erasure) -> str:
        return "\n".join(f"  {what}: {n}" for what, n in sorted(erasure.counts.items()))

    if not yes or dry_run:
        whom, preview = attempt(commit=False)
        if preview.nothing_left:
            click.echo(f"nothing left to erase for {whom} (already erased)")
            return
        click.echo(f"{whom} → {preview.label}; would change:\n{summary(preview)}")
        if dry_run:
            return
        if not _interactive():
            click.echo("error: add --yes to erase (no terminal to ask in)", err=True)
            sys.exit(1)
        if not click.confirm("Erase this customer's personal data? This cannot be undone"):
            click.echo("nothing erased")
            sys.exit(1)
    whom, erasure = attempt(commit=True)
    if erasure.nothing_left:
        click.echo(f"nothing left to erase for {whom} (already erased)")
        return
    click.echo(f"{whom} erased, now {erasure.label!r}:\n{summary(erasure)}")
