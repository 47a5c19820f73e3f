"""The signed work order as a PDF (fpdf2, an embedded CJK font), stored with the job and sent.

Layout and wording come from ``templates/cust_workorder_pdf.j2`` rendered in the customer's
language: a few block elements (``<h1>``, ``<h2>``, ``<row label="…">``, ``<p>``, ``<small>``)
that :func:`render_pdf` lays out. The template is autoescaped, so text from users can never
become an element.

Photos: the PDF lists the job's photos by their Telegram file id (and count); their pictures
stay in Telegram and in the chat where the customer received them with the work order. Fetching
the bytes would need the runtime (getFile + download), which services do not call.

The file is kept in the ``work_order_pdfs`` table (not a folder): it is written in the same
transaction as the sign-off, and every worker process sees it. It is sent as ``sendDocument``
with the bytes in the outbox payload (``document_b64`` + ``document_name``), which each runtime
turns into its framework's upload object.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

from bot.db.models import Dispatch, User
from bot.db.models.customer import SignOff, WorkOrderPdf
from bot.services import dispatches as svc
from bot.services.report_files import queue_document
from bot.services.uow import UnitOfWork

TEMPLATE = "cust_workorder_pdf"
FONT_FAMILY = "cjk"

# A font with Chinese glyphs: the PyPI package first (pyproject installs it), then the usual
# Debian packages (fonts-wqy-microhei, fonts-noto-cjk) as a fallback. (path, index in a .ttc)
_PACKAGED_FONT = ("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc", 0)
_SYSTEM_FONTS = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # index 2: Simplified
)


class FontMissing(RuntimeError):
    """No CJK font is installed (the project's dependencies install one)."""


@cache
def find_font() -> tuple[Path, int]:
    """The CJK font file to embed and its index inside a font collection."""
    package, name, index = _PACKAGED_FONT
    try:
        packaged = Path(str(resources.files(package).joinpath(name)))
    except ModuleNotFoundError:
        packaged = None
    if packaged is not None and packaged.exists():
        return packaged, index
    for path, number in _SYSTEM_FONTS:
        if Path(path).exists():
            return Path(path), number
    raise FontMissing(
        "no CJK font for work-order PDFs: install the paperang-p2-fonts-cjk package "
        "(a project dependency) or Debian's fonts-wqy-microhei"
    )


# ---- the markup the template produces ---------------------------------------------------------


@dataclass
class Block:
    kind: str  # h1 | h2 | row | p | small
    text: str = ""
    label: str = ""
    parts: list[str] = field(default_factory=list)


class _Markup(HTMLParser):
    """Reads the template's block elements; text outside them (layout whitespace) is dropped."""

    KINDS = frozenset({"h1", "h2", "row", "p", "small"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.current: Block | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.KINDS and self.current is None:
            self.current = Block(kind=tag, label=dict(attrs).get("label") or "")
        elif tag == "br" and self.current is not None:
            self.current.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.current is not None and tag == self.current.kind:
            self.current.text = "".join(self.current.parts).strip()
            self.blocks.append(self.current)
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.current.parts.append(data)


def parse_markup(markup: str) -> list[Block]:
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return parser.blocks


# ---- layout -------------------------------------------------------------------------------------


def _common_characters() -> str:
    """What almost every work order is written in: Latin, punctuation, and the 7,445
    characters of GB 2312 (simplified Chinese as people write it, names included)."""
    chars = {chr(c) for c in range(0x20, 0x250)}
    chars |= {chr(c) for c in (*range(0x2000, 0x2070), *range(0x2100, 0x2200))}
    chars |= {chr(c) for c in (*range(0x3000, 0x3040), *range(0xFF00, 0xFFF0))}
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(sorted(chars))


def _subset(text: str) -> tuple[bytes, str, frozenset[int]]:
    """The CJK font cut down to ``text``: (font file bytes, suffix, code points it has)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    source, index = find_font()
    font = TTFont(str(source), fontNumber=index, lazy=True)
    options = subset.Options()
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.layout_features = []
    options.glyph_names = False
    options.drop_tables = [*options.drop_tables, "FFTM"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    covered = frozenset(int(c) for c in font.getBestCmap())
    suffix = ".otf" if "CFF " in font else ".ttf"
    buffer = io.BytesIO()
    font.save(buffer)
    return buffer.getvalue(), suffix, covered


_FONT_LOCK = threading.Lock()
_COMMON_FONT: list[tuple[bytes, str, frozenset[int]]] = []


def _common_font() -> tuple[bytes, str, frozenset[int]]:
    """The font cut down to the common characters: fpdf2 loads its 8,000 glyphs in
    milliseconds, instead of parsing all 30,000 of the full font for every PDF (a second).

    Building it takes a few seconds, so it is kept in memory and in the temporary folder
    (a restart reads it back); :func:`warm_up` builds it ahead of the first sign-off.
    """
    with _FONT_LOCK:
        if not _COMMON_FONT:
            _COMMON_FONT.append(_cached_common_font())
        return _COMMON_FONT[0]


def _cached_common_font() -> tuple[bytes, str, frozenset[int]]:
    from fontTools.ttLib import TTFont

    source, index = find_font()
    stat = source.stat()
    key = hashlib.sha256(
        f"{source}|{index}|{stat.st_size}|{stat.st_mtime_ns}|{_common_characters()}".encode()
    ).hexdigest()[:20]
    cached = Path(tempfile.gettempdir()) / f"fieldbot-font-{key}"
    try:
        data = cached.read_bytes()
        font = TTFont(io.BytesIO(data), lazy=True)
        suffix = ".otf" if "CFF " in font else ".ttf"
        return data, suffix, frozenset(int(c) for c in font.getBestCmap())
    except Exception:  # not there yet, or unreadable: build it again
        pass
    data, suffix, covered = _subset(_common_characters())
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, cached)
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only temp folder: memory only
    return data, suffix, covered


def warm_up() -> None:
    """Load fpdf2 and build the font cache now (blocking: a thread at start-up, say)."""
    import fpdf  # noqa: F401  (its first import takes a moment too)

    _common_font()


_WARMING: list[threading.Thread] = []  # the warm-up thread, once started
_WARM_LOCK = threading.Lock()  # not _FONT_LOCK: the warm-up holds that for seconds


def warm_up_soon() -> None:
    """Warm up in a background thread unless done or under way: a report was submitted, so a
    sign-off (and its PDF, made inside the customer's transaction) is likely to follow."""
    with _WARM_LOCK:
        if _COMMON_FONT or _WARMING:
            return
        thread = threading.Thread(target=warm_up, name="fieldbot-pdf-warm-up", daemon=True)
        _WARMING.append(thread)
    thread.start()


@cache
def _all_code_points() -> frozenset[int]:
    from fontTools.ttLib import TTFont

    source, index = find_font()
    font = TTFont(str(source), fontNumber=index, lazy=True)
    return frozenset(int(c) for c in font.getBestCmap())


def _font_for(text: str, folder: Path) -> Path:
    """A font file with every character of ``text`` the CJK font has."""
    data, suffix, covered = _common_font()
    missing = {ord(c) for c in text} - covered
    if missing & _all_code_points():  # a rare character (a name outside GB 2312)
        data, suffix, _ = _subset(_common_characters() + text)
    path = folder / f"font{suffix}"
    path.write_bytes(data)
    return path


def render_pdf(markup: str, *, title: str, created: datetime) -> bytes:
    """Lay out the template's blocks as an A4 PDF with the CJK font embedded (subset)."""
    blocks = parse_markup(markup)
    footer = f"{title} · 0123456789/"
    characters = "".join(sorted({c for b in blocks for c in b.text + b.label} | set(footer)))
    with tempfile.TemporaryDirectory(prefix="fieldbot-pdf-") as folder:
        font = _font_for(characters, Path(folder))
        return _layout(blocks, font, title=title, created=created)


def _long(text: str) -> bool:
    """A value that may not fit one page as a table row."""
    return len(text) > 400 or text.count("\n") > 12


def _layout(blocks: list[Block], font: Path, *, title: str, created: datetime) -> bytes:
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(FONT_FAMILY, size=8)
            self.set_text_color(120)
            self.cell(0, 5, f"{title} · {self.page_no()}/{{nb}}", align="C")

    pdf = _Pdf(format="A4")
    pdf.set_title(title)
    pdf.set_creator("fieldbot")
    pdf.set_creation_date(created)
    pdf.add_font(FONT_FAMILY, "", str(font))
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_margins(16, 16, 16)
    pdf.add_page()
    label_width = 46
    rows: list[Block] = []

    def flush_rows() -> None:
        if not rows:
            return
        pdf.set_font(FONT_FAMILY, size=10)
        with pdf.table(
            col_widths=(label_width, pdf.epw - label_width),
            borders_layout="NONE",
            first_row_as_headings=False,
            line_height=5.5,
            padding=(1, 1, 1, 0),
            text_align="LEFT",
        ) as table:
            for block in rows:
                row = table.row()
                row.cell(block.label)
                row.cell(block.text or "–")
        rows.clear()

    for block in blocks:
        if block.kind == "row" and not _long(block.text):
            rows.append(block)
            continue
        flush_rows()
        if block.kind == "row":  # too long for a table row (which cannot span pages)
            pdf.set_font(FONT_FAMILY, size=10)
            pdf.set_text_color(100)
            pdf.multi_cell(0, 6, block.label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(0)
            pdf.multi_cell(0, 5.5, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
            continue
        if block.kind == "h1":
            pdf.set_font(FONT_FAMILY, size=17)
            pdf.multi_cell(0, 9, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(2)
        elif block.kind == "h2":
            pdf.ln(3)
            pdf.set_font(FONT_FAMILY, size=12.5)
            pdf.set_text_color(30, 60, 110)
            pdf.multi_cell(0, 7, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_draw_color(180)
            pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
            pdf.ln(1.5)
            pdf.set_text_color(0)
        elif block.kind == "small":
            pdf.set_font(FONT_FAMILY, size=7.5)
            pdf.set_text_color(110)
            pdf.multi_cell(0, 4, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(0)
        else:
            pdf.set_font(FONT_FAMILY, size=10)
            pdf.multi_cell(0, 5.5, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(1)
    flush_rows()
    return bytes(pdf.output())


# ---- what the work order says -------------------------------------------------------------------


async def work_order_params(uow: UnitOfWork, dispatch: Dispatch) -> dict[str, Any]:
    """Everything the work order shows (chat text and PDF alike), as plain values."""
    site = await svc.site_of(uow, dispatch)
    customer = await svc.customer_of(uow, dispatch)
    engineer = await uow.session.get(User, dispatch.engineer_id) if dispatch.engineer_id else None
    final = dict(dispatch.report.get("final") or {})
    submitted = final.get("submitted_at")
    parts = [
        {"name": str(p.get("name", "")), "quantity": int(p.get("quantity", 1))}
        for p in final.get("parts") or []
    ]
    return {
        "number": dispatch.number,
        "service_type": dispatch.service_type,
        "customer": customer.name,
        "address": site.address,
        "contact_name": dispatch.contact_name,
        "equipment_model": dispatch.equipment_model,
        "quantity": dispatch.quantity,
        "serials": ", ".join(str(s) for s in dispatch.serials),
        "engineer": engineer.name if engineer else "",
        "staff_no": (engineer.staff_no or "") if engineer else "",
        "window_start": dispatch.window_start,
        "window_end": dispatch.window_end,
        "arrived_at": dispatch.arrived_at,
        "completed_at": datetime.fromisoformat(str(submitted)) if submitted else None,
        "outcome": str(final.get("outcome") or ""),
        "work_done": str(final.get("work_done") or ""),
        "parts": parts,
        "photos": [str(p) for p in final.get("photos") or []],
        "extra_work": str(final.get("extra_work") or ""),
        "tz": svc.site_timezone(site, uow.settings.timezone),
    }


def file_name(dispatch: Dispatch) -> str:
    return f"work-order-{dispatch.number}.pdf"


async def make_work_order(
    uow: UnitOfWork,
    dispatch: Dispatch,
    signoff: SignOff,
    *,
    locale: str,
    signer: str,
) -> WorkOrderPdf:
    """Render the signed work order in ``locale`` and store it with the job."""
    params = await work_order_params(uow, dispatch)
    now = uow.clock.now()
    params.update(
        signoff={
            "method": signoff.method,
            "at": signoff.answered_at,
            "signer": signer,
            "telegram_id": signoff.telegram_id,
            "sha256": signoff.text_sha256,
            "photo_file_id": signoff.photo_file_id or "",
        },
        generated_at=now,
    )
    markup = uow.services.renderer.render(TEMPLATE, locale, params)
    title = file_name(dispatch).removesuffix(".pdf")
    content = await asyncio.to_thread(render_pdf, markup, title=title, created=now)
    row = WorkOrderPdf(
        dispatch_id=dispatch.id,
        signoff_id=signoff.id,
        locale=locale,
        file_name=file_name(dispatch),
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        content=content,
        created_at=now,
    )
    uow.session.add(row)
    await uow.session.flush()
    return row


async def send_work_order(
    uow: UnitOfWork,
    pdf: WorkOrderPdf,
    *,
    user_id: int,
    caption: str,
    params: dict[str, Any],
) -> bool:
    """Queue the PDF as a document to a user (caption rendered in their language)."""
    user = await uow.session.get(User, user_id)
    if user is None:
        return False
    locale = user.locale or uow.settings.default_locale
    text = html.unescape(uow.services.renderer.render(caption, locale, params))
    return await queue_document(uow, user, name=pdf.file_name, data=pdf.content, caption=text)
