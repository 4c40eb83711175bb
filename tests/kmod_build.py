"""Build one of the tests' out-of-tree kernel modules (tests/vendor_driver, tests/crashtest)
with its directory's Makefile (tests/kmod.mk): the sources are copied into out_dir and
built there with `make -C <headers> M=<out_dir> modules`, so the source tree stays clean.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from harness.errors import InfraError

HEADERS_FIX = "apt-get install build-essential linux-image-amd64 linux-headers-amd64 (or make setup)"


def build_out_of_tree(source_dir: Path, module: str, out_dir: Path, kdir: Path | None,
                      error: type[InfraError]) -> Path:
    """Build out_dir/<module>.ko (Kbuild rebuilds only what changed); returns its path.

    make's output goes to out_dir/build.log; one build at a time per out_dir (a lock file
    there). Raises `error` when make, the headers or the compiler are missing, or the build
    fails; its message names the fix and ends with the path."""
    make = shutil.which("make")
    if make is None:
        raise error(f"make is not installed: {HEADERS_FIX}: {source_dir}")
    out_dir = Path(out_dir).resolve()
    if out_dir.is_relative_to(source_dir):
        raise error(f"build {module}.ko outside its source tree, not in {out_dir}")
    argv = [make, "--no-print-directory", "-C", str(source_dir), "all", f"BUILD_DIR={out_dir}"]
    if kdir is not None:
        argv.append(f"KDIR={kdir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        (out_dir / "build.log").write_text(proc.stdout + proc.stderr)
    ko = out_dir / f"{module}.ko"
    if proc.returncode != 0 or not ko.is_file():
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        fix = f"{HEADERS_FIX}: " if "no kernel headers" in tail or "not installed" in tail else ""
        raise error(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}\n{fix}{out_dir}")
    return ko
