"""One VM per pytest-xdist worker: the VM suite runs with -n 2, under one run id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.testing import require_module

from .conftest import REPO

pytestmark = pytest.mark.vm


def test_the_vm_suite_runs_two_workers_side_by_side(reference_guest: object, tmp_path: Path) -> None:
    require_module("xdist", "make setup (pip install pytest-xdist)")
    artifacts = tmp_path / "artifacts"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", f"--harness-artifacts={artifacts}",
         "tests/test_vm_linux.py", "-k", "good_content or hardened_sensor or zeroed or vulnerable_sensor",
         "-q"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout
    [run] = artifacts.iterdir()  # one run id shared by both workers
    verdicts = [json.loads(p.read_text()) for p in run.glob("*/verdict.json")]
    domains = {v["domain"] for v in verdicts}
    assert len(verdicts) == 4 and len(domains) == 4
    assert {d.split("-")[-2] for d in domains} == {"gw0", "gw1"}  # slots carry the worker id
