"""What a long-running process does once it has started (``fieldbot run``)."""

from __future__ import annotations

import gc

from bot import bootstrap


def test_a_started_process_warms_the_pdf_font_and_tunes_the_collector(monkeypatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(bootstrap, "warm_up_soon", lambda: calls.append("warm-up"))
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    bootstrap.settle_process()
    assert calls == ["warm-up", "collect", "freeze", bootstrap.GC_THRESHOLD]
    assert bootstrap.GC_THRESHOLD[0] > 700  # fewer young collections than Python's default
