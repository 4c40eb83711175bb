"""Run the sensor's C content interpreter (host build) on a file.

The host checkers are built from drivers/ by `make -C drivers host`; they are
(re)built here on first use and whenever a source is newer than the binary.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InfraError
from ..paths import DRIVERS, DRIVERS_BUILD, driver_tree
from .files import check_content_path

BUILDS = ("vulnerable", "hardened")
CHECK_TIMEOUT_S = 60


@dataclass(frozen=True)
class SensorCheck:
    """What one build of the interpreter did with one file."""

    build: str
    file: str
    outcome: str  # loaded | rejected | crash | timeout
    reason: str
    reason_code: str | None
    crash: dict[str, Any] | None
    raw: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"sensor": self.build, **self.raw}


def _sources() -> list[Path]:
    return [DRIVERS / "Makefile", *sorted((DRIVERS / "common").iterdir()),
            *sorted((DRIVERS / "host").iterdir())]


def checker_path(build: str) -> Path:
    """The host checker for `build`, built if missing or stale."""
    if build not in BUILDS:
        raise ValueError(f"unknown sensor build {build!r}; use one of {', '.join(BUILDS)}")
    binary = DRIVERS_BUILD / "host" / f"chf-check-{build}"
    if _fresh(binary):
        return binary
    DRIVERS_BUILD.mkdir(parents=True, exist_ok=True)
    with open(DRIVERS_BUILD / ".host-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _fresh(binary):
            _build_host()
    return binary


def _fresh(binary: Path) -> bool:
    if not binary.exists():
        return False
    built = binary.stat().st_mtime
    return all(src.stat().st_mtime <= built for src in _sources())


def _build_host() -> None:
    if shutil.which("make") is None or shutil.which("cc") is None:
        raise InfraError("building the host sensor needs make and a C compiler: "
                         "run 'make setup' (or apt-get install build-essential)")
    proc = subprocess.run(["make", "-s", "-C", str(driver_tree()), "host"], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise InfraError(f"building the host sensor failed:\n{proc.stdout}{proc.stderr}"
                         f"\nrerun: make -C {DRIVERS} host")


def check_file(path: Path, build: str) -> SensorCheck:
    """Run the `build` interpreter on the file at `path` in a guarded child process."""
    check_content_path(path)
    binary = checker_path(build)
    try:
        proc = subprocess.run([str(binary), str(path)], capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InfraError(f"{binary} did not answer within {CHECK_TIMEOUT_S} s for {path}") from None
    if proc.returncode != 0:
        raise InfraError(proc.stderr.strip() or f"{binary} exited {proc.returncode} for {path}")
    try:
        raw = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise InfraError(f"{binary} printed no JSON for {path}: {proc.stdout[:200]!r}") from None
    return SensorCheck(build=build, file=str(path), outcome=raw["outcome"], reason=raw["reason"],
                       reason_code=raw.get("reason_code"), crash=raw.get("crash"), raw=raw)
