"""Build acme_guard.ko, the tests' stand-in for a vendor driver, as a vendor would.

`build_module(out_dir)` runs this directory's Makefile, which copies the sources
into out_dir and calls `make -C <headers> M=<out_dir> modules`: the source tree
stays clean.  The headers are those of the kernel the reference guest boots
(Debian's linux-headers-amd64, /lib/modules/<release>/build) unless `kdir` is given.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.errors import InfraError

from ..kmod_build import HEADERS_FIX, build_out_of_tree

SOURCE_DIR = Path(__file__).resolve().parent
REPO = SOURCE_DIR.parents[1]
DEFAULT_OUT = REPO / "build" / "vendor-driver"
MODULE_NAME = "acme_guard"


class VendorDriverBuildError(InfraError):
    """acme_guard.ko cannot be built; the message names the fix and ends with the path."""


def _make() -> str:
    make = shutil.which("make")
    if make is None:
        raise VendorDriverBuildError(f"make is not installed: {HEADERS_FIX}: {SOURCE_DIR}")
    return make


def _make_args(kdir: Path | None) -> list[str]:
    return [] if kdir is None else [f"KDIR={kdir}"]


def headers_dir(kdir: Path | None = None) -> Path:
    """The kernel headers the module is built against; VendorDriverBuildError when missing."""
    proc = subprocess.run([_make(), "-s", "--no-print-directory", "-C", str(SOURCE_DIR),
                           "print-kdir", *_make_args(kdir)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        said = " ".join(line.strip() for line in proc.stderr.splitlines()
                        if line.strip() and not line.startswith("make"))
        raise VendorDriverBuildError(
            f"no kernel headers to build {MODULE_NAME}.ko against ({said or proc.returncode}): "
            f"{kdir or SOURCE_DIR / 'Makefile'}")
    return Path(proc.stdout.strip())


def build_module(out_dir: Path = DEFAULT_OUT, kdir: Path | None = None) -> Path:
    """Build out_dir/acme_guard.ko against the headers `headers_dir(kdir)` names; returns its
    path (tests/kmod_build.py: VendorDriverBuildError when the headers, make or the compiler
    are missing, or the build fails)."""
    return build_out_of_tree(SOURCE_DIR, MODULE_NAME, out_dir, headers_dir(kdir), VendorDriverBuildError)
