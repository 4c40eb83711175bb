"""The reference guest's cache directory: its layout, entries, stamps, lock and pruning.

    <cache>/kernel-<sha16>/vmlinux     unpacked kernel, keyed by the bzImage's hash (shared)
    <cache>/<key16>/initrd.cpio.gz     one entry per input set
    <cache>/<key16>/recovery.cpio.gz   the recovery environment's initramfs of that set
    <cache>/<key16>/host_key.pub, host_key.fingerprint, manifest.json (written last)
    <cache>/stamps/<ctx16>.json        stat signatures of the inputs -> key (fast path)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from harness.guest.ref_guest import ReferenceGuest
from harness.paths import cache_dir

KEEP_ENTRIES = 3  # cached guests kept; older ones are pruned after a build


def default_cache_dir() -> Path:
    """<cache>/guest/linux-ref (paths.cache_dir(): $HARNESS_CACHE, else <repo>/build, ...)."""
    return cache_dir() / "guest" / "linux-ref"


def stat_signature(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on directory/.lock (flock: released if the process dies)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def entry_guest(entry: Path) -> ReferenceGuest | None:
    """The guest a cache entry holds, or None when its manifest or one of its files is missing."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    kernel = entry.parent / manifest["kernel"]
    initrd = entry / "initrd.cpio.gz"
    recovery = entry / "recovery.cpio.gz"
    pub = entry / "host_key.pub"
    if not (kernel.is_file() and initrd.is_file() and recovery.is_file() and pub.is_file()):
        return None
    return ReferenceGuest(kernel=kernel, initrd=initrd, kernel_version=manifest["kernel_version"],
                          host_key_pub=pub, key=manifest["key"],
                          host_key_fingerprint=manifest.get("host_key_fingerprint", ""),
                          pvh=manifest.get("pvh", True),
                          modules=tuple(manifest.get("modules", ())), recovery_initrd=recovery)


def stamp_lookup(stamp: Path, context: dict[str, object]) -> str | None:
    """The key a stamp recorded, if its context matches and no input's stat signature changed."""
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if data.get("context") != context:
        return None
    for path, sig in data.get("stats", {}).items():
        if stat_signature(Path(path)) != sig:
            return None
    return data.get("key")


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def prune(cache: Path, keep: Path) -> None:
    """Keep the newest KEEP_ENTRIES guests (and `keep`), their kernels, nothing else."""
    entries = sorted((p for p in cache.iterdir() if (p / "manifest.json").is_file()),
                     key=lambda p: (p / "manifest.json").stat().st_mtime_ns, reverse=True)
    kept = [keep] + [p for p in entries if p != keep][: KEEP_ENTRIES - 1]
    for p in entries:
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True)
    kernels = set()
    for p in kept:
        with contextlib.suppress(OSError, ValueError, KeyError):
            kernels.add(Path(json.loads((p / "manifest.json").read_text())["kernel"]).parts[0])
    now = time.time()
    for p in cache.iterdir():
        if p.name.startswith("kernel-") and p.name not in kernels:
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".tmp-") and now - p.stat().st_mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)
