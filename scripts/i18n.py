"""Extract template messages and update the catalogues: ``uv run python scripts/i18n.py``.

New messages appear in every locale's messages.po with an empty translation; the test
suite fails until zh_Hans has them all (en needs none: the English text is the msgid).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ("en", "zh_Hans")


def main() -> int:
    pot = ROOT / "locales" / "messages.pot"
    run = [sys.executable, "-m", "babel.messages.frontend"]
    subprocess.run(
        [
            *run,
            "extract",
            "-F",
            "babel.cfg",
            "-o",
            str(pot),
            "--no-location",
            "--omit-header",
            "--sort-output",
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    for locale in LOCALES:
        po = ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"
        action = "update" if po.exists() else "init"
        extra = ["--no-fuzzy-matching"] if action == "update" else []
        subprocess.run(
            [*run, action, "-i", str(pot), "-d", "locales", "-l", locale, "--no-wrap", *extra],
            cwd=ROOT,
            check=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
