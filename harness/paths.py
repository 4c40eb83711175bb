"""Where the project's parts live, relative to this package's checkout."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVERS = REPO_ROOT / "drivers"
DRIVERS_BUILD = DRIVERS / "build"
FIXTURES = REPO_ROOT / "fixtures"
CONTENT_FIXTURES = FIXTURES / "content"
