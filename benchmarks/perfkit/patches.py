"""Prototype fixes, applied at run time inside a benchmark bot process only (PERF_PATCHES).

A place to measure a proposed change to ``bot/`` before anyone makes it: add a function
``_<name>`` that monkey-patches the bot process, list the name in ``PATCHES``, and run
``benchmarks/flows.py --ablation`` (each patch alone, all together, as is, and bare, back to
back) or ``--patches <name>``. ``apply`` refuses unknown names loudly rather than measuring
something else.

None are defined now: the prototypes measured in docs/PERFORMANCE.md (sender_batch,
lean_handle, no_selectin, raw_poll, raw_send, inloop_sqlite, gc_freeze, sender_paced) were
adopted into ``bot/`` on 2026-11-26; ``git log -- benchmarks/perfkit/patches.py`` has their
code.
"""

from __future__ import annotations

PATCHES: tuple[str, ...] = ()


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            known = ", ".join(PATCHES) or "none"
            raise SystemExit(f"unknown patch {name!r}; known: {known}")
        globals()[f"_{name}"]()
