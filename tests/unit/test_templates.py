"""Every message and button the code names exists, renders in both locales, and is translated."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LOCALES_DIR, TEMPLATES_DIR, Renderer, locale_for

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_CALLS = {"Msg", "DomainError", "reply", "answer", "CallbackAnswer"}


def keys_in_code() -> tuple[set[str], set[str]]:
    """String literals passed as the template key of Msg/DomainError/reply, and button labels."""
    templates, labels = set(), set()
    for path in (ROOT / "bot").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name == "of" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                labels.add(first.value)
            elif (
                name in MESSAGE_CALLS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value
            ):
                templates.add(first.value)
            elif name == "KeyButton" and isinstance(first, ast.Constant):
                labels.add(str(first.value))
    return templates, labels


def test_every_template_the_code_names_exists() -> None:
    templates, _ = keys_in_code()
    missing = sorted(t for t in templates if not (TEMPLATES_DIR / f"{t}.j2").exists())
    assert missing == []
    assert len(templates) > 40


def test_every_button_label_the_code_names_exists() -> None:
    _, labels = keys_in_code()
    source = "".join(p.read_text() for p in TEMPLATES_DIR.glob("buttons*.j2"))
    defined = set(re.findall(r"{% macro (\w+)\(", source))
    dynamic = {label for label in labels if "{" in label}
    assert sorted(labels - defined - dynamic) == []


def test_zh_hans_catalogue_translates_every_message() -> None:
    extracted = {
        msgid if isinstance(msgid, str) else msgid[0]
        for _, _, msgid, *_ in extract_from_dir(
            str(ROOT),
            method_map=[("templates/**.j2", "jinja2")],
            options_map={
                "templates/**.j2": {
                    "extensions": "jinja2.ext.i18n",
                    "trim_blocks": "true",
                    "lstrip_blocks": "true",
                }
            },
        )
    }
    with (LOCALES_DIR / "zh_Hans" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    untranslated = sorted(
        m
        for m in extracted
        if not (catalog.get(m) and catalog.get(m).string) or catalog.get(m).fuzzy
    )
    assert untranslated == [], "run scripts/i18n.py and translate these"


@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
def test_buttons_render_in_each_locale(locale: str) -> None:
    renderer = Renderer()
    assert renderer.label("accept", locale) in ("✅ Accept", "✅ 接单")
    when = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    assert "14:30" in renderer.label("eta_at", locale, {"time": when, "tz": "Asia/Shanghai"})


def test_user_text_is_escaped_in_html() -> None:
    text = Renderer().render("unknown_command", "en", {"command": "<b>x</b>"})
    assert "<b>" not in text and "&lt;b&gt;" in text


@pytest.mark.parametrize(
    ("code", "locale"),
    [("zh-hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("en-GB", "en"), ("fr", "en"), (None, "en")],
)
def test_telegram_language_picks_the_locale(code: str | None, locale: str) -> None:
    assert locale_for(code) == locale
