"""Artifacts on a full disk: a clear error naming the file, and never half a verdict."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifacts import write_json
from harness.errors import HarnessError
from harness.testing import skip_or_fail


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real filesystem that fills up."""
    if os.geteuid() != 0:
        skip_or_fail("mounting a tmpfs needs root: run the suite as root (CI does)")
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_keeps_the_last_verdict_whole_and_names_the_file(small_disk: Path) -> None:
    verdict = small_disk / "verdict.json"
    write_json(verdict, {"verdict": "healthy", "boots": 1})
    (small_disk / "filler").write_bytes(b"\0" * (64 * 1024 - 8192))  # leave less than a page or two

    with pytest.raises(HarnessError) as caught:
        write_json(verdict, {"verdict": "boot-loop", "crash": {"text": "x" * 100_000}})
    assert str(verdict) in str(caught.value) and "No space left on device" in str(caught.value)
    assert json.loads(verdict.read_text()) == {"verdict": "healthy", "boots": 1}  # the old one, whole
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "verdict.json"]  # no temp file left


def test_artifacts_go_to_the_directory_the_user_runs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness reproduce` from a vendor's project writes there, not into the harness checkout;
    HARNESS_ARTIFACTS overrides."""
    from harness.artifacts import default_root

    monkeypatch.delenv("HARNESS_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / "artifacts"
    monkeypatch.setenv("HARNESS_ARTIFACTS", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
