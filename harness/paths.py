"""Where the harness's own files are, and where what it builds goes.

Two layouts, decided once at import:

* a checkout (the source tree, also an editable install): templates, driver sources and
  fixtures are the checkout's own directories; builds go to <checkout>/build and the drivers
  build in place (drivers/build/), as a developer running `make -C drivers` expects;
* an installed copy (`pip install <checkout>`, a wheel): the same directories ship inside the
  package as harness/_data/ (setup.py's build step copies them there), and nothing is ever
  written into site-packages: builds go to the cache directory (`cache_dir()`), and the
  drivers are built in a copy of their sources in that cache (`driver_tree()`).

`HARNESS_CACHE` moves the cache in both layouts (CI keeps it between jobs). Artifacts are not
here: they go to ./artifacts of the current directory (`harness.artifacts.default_root()`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from .errors import InfraError

PACKAGE = Path(__file__).resolve().parent
PACKAGE_DATA = PACKAGE / "_data"  # only in an installed copy: see setup.py
INSTALLED = PACKAGE_DATA.is_dir()
# The checkout holding this package; in an installed copy, the site-packages directory (never
# write there: use cache_dir()).
REPO_ROOT = PACKAGE.parent
_SOURCE = PACKAGE_DATA if INSTALLED else REPO_ROOT

VM_TEMPLATES = _SOURCE / "vm-templates"  # libvirt domain templates, the guest's /init, recovery scripts
FIXTURES = _SOURCE / "fixtures"
CONTENT_FIXTURES = FIXTURES / "content"
DRIVER_SOURCES = _SOURCE / "drivers"  # the sample sensor's sources, as shipped (never built in)


def cache_dir() -> Path:
    """Where built things go: $HARNESS_CACHE; else <checkout>/build in a checkout; else
    $XDG_CACHE_HOME/harness (default ~/.cache/harness).

    Holds the reference guest (guest/linux-ref/), the KVM probe (kvm-probe.json), the SSH
    wrappers (ssh/), the guest build lock and, installed, the drivers' build trees (drivers/).
    """
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(os.path.abspath(Path(env).expanduser()))  # absolute: make -C changes directory
    if not INSTALLED:
        return REPO_ROOT / "build"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative value is invalid and ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "harness"


def _tree_digest(root: Path) -> str:
    """sha256 over the relative paths and contents of every file under root."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# The tree `make -C` runs in, sources and build/ together (the Makefiles build into ../build).
# Installed: a copy of the shipped sources per distinct content, so an upgrade that changes a
# source gets a fresh tree (and fresh builds) rather than modules older than their sources.
if INSTALLED:
    DRIVERS = cache_dir() / "drivers" / _tree_digest(DRIVER_SOURCES)[:12]
else:
    DRIVERS = DRIVER_SOURCES
DRIVERS_BUILD = DRIVERS / "build"


def driver_tree() -> Path:
    """DRIVERS, ready for `make -C`: in an installed copy the shipped sources are copied there
    on first use (under a lock; a marker written last says the copy is complete, since build/
    may be made there before). Call it before running make in DRIVERS."""
    marker = DRIVERS / ".harness-sources"
    if not INSTALLED or marker.is_file():
        return DRIVERS
    try:
        DRIVERS.mkdir(parents=True, exist_ok=True)
        with open(DRIVERS.parent / f".{DRIVERS.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.is_file():
                shutil.copytree(DRIVER_SOURCES, DRIVERS, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
                marker.write_text(f"copied from {DRIVER_SOURCES}\n")
    except OSError as exc:
        raise InfraError(f"cannot copy the driver sources into the cache ({exc}): set HARNESS_CACHE "
                         f"to a writable directory; cache: {DRIVERS}") from None
    return DRIVERS


if __name__ == "__main__":  # `make -C "$(python -m harness.paths)" windows`: the tree to build in
    print(driver_tree())
