"""Shared helpers for the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.testing import skip_or_fail

from .browser import Browser

if TYPE_CHECKING:
    from harness.windows.domain import Firmware

REPO = Path(__file__).resolve().parent.parent


def require_tool(tool: str, fix: str) -> str:
    """Path of `tool`; a missing tool skips the test, except under CI=true where it fails."""
    path = shutil.which(tool)
    if path is None:
        skip_or_fail(f"{tool} not found: {fix}")
    return path


def run_harness(*args: str | Path, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `harness` command line, as a user would."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture
def firmware(tmp_path: Path) -> "Firmware":
    """Stand-in OVMF files: rendering and validating a Windows domain need no ovmf package."""
    from harness.windows.domain import Firmware

    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"\0" * 4096)
    template.write_bytes(b"V" * 4096)
    return Firmware(code, template)


pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for a test module's pages (tests/browser.py)."""
    with Browser.start(tmp_path_factory.mktemp("chromium")) as b:
        yield b
