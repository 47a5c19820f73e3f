"""The layout is the architecture: only bot/runtime/ may import a Telegram framework."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = {"aiogram", "telegram"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_runtime_imports_aiogram_or_telegram() -> None:
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("bot", "runtime"):
            continue
        if imported_modules(path) & FRAMEWORKS:
            offenders.append(str(relative))
    assert offenders == []


def test_flows_and_handlers_do_no_io_of_their_own() -> None:
    forbidden = {"aiohttp", "httpx", "requests", "socket", "uvicorn", "fastapi", "subprocess"}
    for folder in ("flows", "handlers", "services"):
        for path in (ROOT / "bot" / folder).rglob("*.py"):
            assert not imported_modules(path) & forbidden, path


def test_env_example_lists_every_setting() -> None:
    listed = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert listed == {name.upper() for name in Settings.model_fields}
