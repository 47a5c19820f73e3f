"""Jinja2 message templates rendered through gettext catalogues (en, zh_Hans)."""

from __future__ import annotations

import io
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES_DIR = ROOT / "templates"
LOCALES_DIR = ROOT / "locales"
LOCALES = ("en", "zh_Hans")
DEFAULT_LOCALE = "en"


def locale_for(language_code: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Map a Telegram language code (``zh-hans``, ``zh-CN``, ``en-GB``) to one of our locales."""
    if not language_code:
        return default
    code = language_code.lower().replace("_", "-")
    if code.startswith("zh"):
        return "zh_Hans"
    if code.startswith("en"):
        return "en"
    return default


def _load_translations(locale: str) -> NullTranslations:
    po = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def _fmt_dt(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def _fmt_hm(value: datetime | None, tz: str = "UTC") -> str:
    return _fmt_dt(value, tz, "%H:%M")


class Renderer:
    """Renders ``templates/<key>.j2`` and button labels in a recipient's locale."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.templates_dir = templates_dir

    @cache  # noqa: B019 - one environment per locale for the process lifetime
    def env(self, locale: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            extensions=["jinja2.ext.i18n"],
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            auto_reload=False,  # templates ship with the code: no stat() of the file per use
        )
        env.install_gettext_translations(  # type: ignore[attr-defined]
            _load_translations(locale), newstyle=True
        )
        env.filters["dt"] = _fmt_dt
        env.filters["hm"] = _fmt_hm
        env.globals["locale"] = locale
        return env

    def render(self, key: str, locale: str, params: dict[str, Any]) -> str:
        """The message text (HTML parse mode) of template ``key``."""
        text = self.env(locale).get_template(f"{key}.j2").render(p=params, **params)
        lines = [line.rstrip() for line in text.strip().splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))

    def label(self, key: str, locale: str, params: dict[str, Any] | None = None) -> str:
        """A button label: a macro in ``templates/buttons*.j2`` (one file per area)."""
        if not params:
            return self._plain_label(key, locale)
        return self._label(key, locale, params)

    @cache  # noqa: B019 - a label without parameters is the same text every time
    def _plain_label(self, key: str, locale: str) -> str:
        return self._label(key, locale, {})

    def _label(self, key: str, locale: str, params: dict[str, Any]) -> str:
        env = self.env(locale)
        for name in self.button_files():
            macro = getattr(env.get_template(name).module, key, None)
            if macro is not None:
                return str(macro(**params)).strip()
        raise KeyError(f"no button label {key!r} in templates/buttons*.j2")

    @cache  # noqa: B019
    def button_files(self) -> tuple[str, ...]:
        return tuple(sorted(p.name for p in self.templates_dir.glob("buttons*.j2")))
