"""The work-order PDF renders Chinese (an embedded CJK font), lays out the template's blocks,
and never turns user text into layout."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from pypdf import PdfReader

from bot.i18n import Renderer
from bot.services.workorder_pdf import find_font, parse_markup, render_pdf

CREATED = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def params(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "number": "FB000042",
        "service_type": "repair",
        "customer": "上海冷链食品有限公司",
        "address": "浦东新区世纪大道88号",
        "contact_name": "李娜",
        "equipment_model": "CH-200 冷水机组",
        "quantity": 2,
        "serials": "SN-1001, SN-1002",
        "engineer": "王伟",
        "staff_no": "E0001",
        "window_start": datetime(2026, 11, 30, 3, 0, tzinfo=UTC),
        "window_end": datetime(2026, 11, 30, 6, 0, tzinfo=UTC),
        "arrived_at": datetime(2026, 11, 30, 3, 10, tzinfo=UTC),
        "completed_at": datetime(2026, 11, 30, 4, 0, tzinfo=UTC),
        "outcome": "fixed",
        "work_done": "更换压缩机继电器，清洁冷凝器。",
        "parts": [{"name": "继电器", "quantity": 2}, {"name": "Fuse", "quantity": 1}],
        "photos": ["AgACAgADphoto1", "AgACAgADphoto2"],
        "extra_work": "",
        "tz": "Asia/Shanghai",
        "signoff": {
            "method": "telegram",
            "at": datetime(2026, 11, 30, 5, 0, tzinfo=UTC),
            "signer": "李娜",
            "telegram_id": 7001,
            "sha256": "ab" * 32,
            "photo_file_id": "",
        },
        "generated_at": CREATED,
    }
    base.update(overrides)
    return base


def work_order(locale: str, **overrides: object) -> bytes:
    markup = Renderer().render("cust_workorder_pdf", locale, params(**overrides))
    return render_pdf(markup, title="work-order-FB000042", created=CREATED)


def test_chinese_text_is_embedded_and_extractable() -> None:
    pdf = work_order("zh_Hans")
    assert pdf.startswith(b"%PDF")
    text = text_of(pdf)
    for chinese in (
        "上海冷链食品有限公司",
        "浦东新区世纪大道88号",
        "更换压缩机继电器，清洁冷凝器。",
        "王伟",
        "继电器 × 2",
        "李娜",
    ):
        assert chinese in text, chinese
    # labels translated by the catalogue (these msgids are shared with the chat messages)
    assert "客户" in text and "设备" in text
    reader = PdfReader(io.BytesIO(pdf))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    embedded = [
        f.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"]
        for f in fonts.values()
    ]
    assert any("/FontFile2" in d and "WenQuanYi" in str(d["/FontName"]) for d in embedded)


def test_the_work_order_carries_job_equipment_times_and_the_sign_off_record() -> None:
    text = text_of(work_order("en"))
    for part in (
        "Work order FB000042",
        "CH-200 冷水机组 × 2",
        "SN-1001, SN-1002",
        "王伟 (staff ID E0001)",
        "2026-11-30 11:10",
        "2026-11-30 12:00",
        "fixed",
        "Fuse × 1",
        "AgACAgADphoto1",
        "AgACAgADphoto2",
        "ab" * 32,
        "7001",
        "2026-11-30 13:00",
    ):
        assert part in re.sub(r"\s+", " ", text) or part in text, part


def test_paper_sign_off_names_the_form_photo() -> None:
    signoff = {
        **params()["signoff"],
        "method": "paper",
        "telegram_id": None,  # type: ignore[dict-item]
        "photo_file_id": "AgACpaperform",
    }
    text = text_of(work_order("en", signoff=signoff))
    assert "on the paper form" in text and "AgACpaperform" in text


def test_a_character_outside_the_common_set_still_renders() -> None:
    text = text_of(work_order("zh_Hans", contact_name="王喆", engineer="张堃"))
    assert "王喆" in text and "张堃" in text


def test_user_text_is_never_layout() -> None:
    pdf = work_order("en", work_done='<h1>big</h1> & "quoted" <row label="x">y</row>')
    assert '<h1>big</h1> & "quoted" <row label="x">y</row>' in text_of(pdf)
    blocks = parse_markup(
        Renderer().render("cust_workorder_pdf", "en", params(customer="<h2>Fake section</h2>"))
    )
    assert [b.text for b in blocks if b.kind == "h2"] == [
        "Job",
        "Equipment",
        "Engineer and times",
        "Work",
        "Sign-off",
    ]


def test_long_work_breaks_onto_more_pages() -> None:
    pdf = work_order("zh_Hans", work_done="检查并清洁冷凝器盘管。" * 600)
    assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2


def test_the_font_comes_with_the_project() -> None:
    path, _ = find_font()
    assert path.exists() and "site-packages" in str(path)  # the PyPI package, not the OS


def test_reports_submitted_while_the_font_warms_up_start_one_warm_up(monkeypatch) -> None:
    """Every submitted report asks for a warm-up; while one runs, no second thread starts
    (each would parse the font again, in the bot's process)."""
    import threading

    from bot.services import workorder_pdf

    release = threading.Event()
    calls: list[int] = []

    def slow_warm_up() -> None:
        calls.append(1)
        release.wait(5)

    monkeypatch.setattr(workorder_pdf, "warm_up", slow_warm_up)
    monkeypatch.setattr(workorder_pdf, "_COMMON_FONT", [])
    monkeypatch.setattr(workorder_pdf, "_WARMING", [])
    for _ in range(5):
        workorder_pdf.warm_up_soon()
    release.set()
    workorder_pdf._WARMING[0].join(5)
    assert calls == [1]
    assert len(workorder_pdf._WARMING) == 1
