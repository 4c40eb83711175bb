"""Puts this checkout on sys.path, so that the benchmarks import the harness they sit in
(run as `python3 bench/x.py`, not from an installed package). Imported first by every
bench module that imports `harness`."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
