"""Hypothesis profiles for the fuzz tests.

- ``ci`` (the default): the same examples every run (``derandomize``), nothing written to
  disk — a red build is always reproducible, never a coin toss.
- ``dev`` (``HYPOTHESIS_PROFILE=dev``): new random examples each run, to hunt; a failure
  prints the ``@reproduce_failure`` blob that replays it.
- ``FUZZ_EXAMPLES_SCALE=10``: ten times the examples (for a long hunt by hand).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

EXAMPLES_SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))
