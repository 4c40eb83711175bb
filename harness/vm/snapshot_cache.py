"""Where saved snapshots live, what they are keyed by, and the per-user copies of them.

    <cache>/snapshots/<key16>/memory.save     the saved domain (read-only)
    <cache>/snapshots/<key16>/manifest.json   key, key parts, transcript, events, disk size, the
                                              saving machine's artifacts directory (written last)
    <cache>/snapshots/<key16>/build/          the saving boot's artifacts (serial.log, events...)
    <cache>/snapshots/<key16>/work/<owner>/   copies of memory.save under other domain names, one
                                              directory per user (a judge), removed when it closes;
                                              one whose owner died is removed by the next user
    <cache>/snapshots/<key16>.lock            held while the entry is built

The key is a hash of everything the memory image depends on: the family's parts (its built
guest, the sensor build, the version of its wait point), the machine settings of the profile
(memory, vCPUs, domain type, the domain template's text), and the host's libvirt and hypervisor
versions (a saved image restores only on the QEMU that saved it). Any change is another key,
hence another snapshot; older entries are pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Profile
from ..paths import cache_dir
from .ownership import lock_held
from .templates import TEMPLATES

FORMAT = "1"  # bump when the entry's layout or the restore protocol changes
KEEP_ENTRIES = 4  # snapshots kept (each ~90 MB); older ones are pruned after a build
IMAGE = "memory.save"
MANIFEST = "manifest.json"


def snapshot_root() -> Path:
    return cache_dir() / "snapshots"


def machine_parts(profile: Profile, domain_type: str) -> dict[str, Any]:
    """What of a profile the memory image depends on (not timeouts, not the loop threshold)."""
    template = TEMPLATES / profile.domain_template
    text = template.read_bytes() if template.is_file() else b""
    return {"family": profile.family, "memory_mib": profile.memory_mib, "vcpus": profile.vcpus,
            "domain_type": domain_type, "template": profile.domain_template,
            "template_sha256": hashlib.sha256(text).hexdigest()}


def host_parts(conn: Any) -> dict[str, Any]:
    """The host's libvirt and hypervisor versions (a saved image restores on the QEMU that saved it)."""
    return {"libvirt": conn.getLibVersion(), "hypervisor": conn.getType(), "hypervisor_version": conn.getVersion()}


def snapshot_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A saved snapshot in the cache."""
    entry: Path
    key: str
    transcript: str  # the console up to the point
    events: list[str]  # lifecycle events of the saving boot
    disk_bytes: int  # size of the content disk the guest saw at the point
    machine_dir: Path  # the saving machine's artifacts directory (paths in the saved XML)
    built_s: float

    @property
    def image(self) -> Path:
        return self.entry / IMAGE


def entry_dir(key: str, root: Path | None = None) -> Path:
    return (root or snapshot_root()) / key[:16]


def load(entry: Path, key: str) -> Snapshot | None:
    """The snapshot of `entry` if it is whole and made for `key`."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key or not (entry / IMAGE).is_file():
        return None
    return Snapshot(entry, key, manifest["transcript"], list(manifest["events"]), int(manifest["disk_bytes"]),
                    Path(manifest["machine_dir"]), float(manifest.get("built_s", 0.0)))


def write_manifest(entry: Path, key: str, parts: dict[str, Any], transcript: str, events: list[str],
                   disk_bytes: int, machine_dir: Path, built_s: float) -> None:
    data = {"key": key, "format": FORMAT, "parts": parts, "transcript": transcript, "events": events,
            "disk_bytes": disk_bytes, "machine_dir": str(machine_dir), "built_s": round(built_s, 3),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = entry / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, entry / MANIFEST)


@contextlib.contextmanager
def building(key: str, root: Path | None = None) -> Iterator[Path]:
    """Hold the entry's build lock (other processes and threads wait); yields the entry path."""
    entry = entry_dir(key, root)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f"{entry.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield entry
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def reset_entry(entry: Path) -> None:
    """Empty `entry` for a new build (a half-built or stale one is removed whole)."""
    if entry.exists():
        for path in entry.rglob("*"):  # the image is read-only: make it removable
            with contextlib.suppress(OSError):
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(entry, ignore_errors=True)
    (entry / "build").mkdir(parents=True)


def prune(keep: Path, root: Path | None = None) -> None:
    """Keep the newest KEEP_ENTRIES snapshots (and `keep`); an entry someone still uses (a live
    work directory) is never removed."""
    base = root or snapshot_root()
    entries = sorted((p for p in base.iterdir() if (p / MANIFEST).is_file()),
                     key=lambda p: (p / MANIFEST).stat().st_mtime_ns, reverse=True)
    kept = {keep, *[p for p in entries if p != keep][: KEEP_ENTRIES - 1]}
    for entry in entries:
        if entry not in kept and not sweep_work(entry):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def work_dir(entry: Path) -> Iterator[Path]:
    """A directory of its own under entry/work, locked for as long as it is used, then removed."""
    sweep_work(entry)
    path = entry / "work" / f"{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    finally:
        os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


def sweep_work(entry: Path) -> int:
    """Remove the work directories of users that are gone; return how many are in use."""
    in_use = 0
    for path in sorted((entry / "work").glob("*")):
        held = lock_held(path / ".lock")
        if held is None:  # not locked yet: a user making it now, or a leftover of long ago
            with contextlib.suppress(OSError):
                held = time.time() - path.stat().st_mtime < 60
        if held:
            in_use += 1
        else:
            shutil.rmtree(path, ignore_errors=True)
    return in_use
