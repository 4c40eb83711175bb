"""The snapshot of a profile and sensor build: found in the cache, or made once by booting the
family's guest to its snapshot point and saving it (harness/vm/snapshot.py)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ..artifacts import new_run_id
from ..config import Profile
from ..errors import InfraError
from ..vm.accel import choose_domain_type
from ..vm.backend import SnapshotPoint
from ..vm.connection import open_connection
from ..vm.snapshot import SnapshotMachine
from ..vm.snapshot_cache import (
    IMAGE, Snapshot, building, entry_dir, host_parts, load, machine_parts, prune, reset_entry,
    snapshot_key, write_manifest,
)
from ..vm.spec import MachineSpec

Progress = Callable[[str], None]


def snapshot_parts(profile: Profile, guest: Any, sensor: str, point: SnapshotPoint) -> dict[str, Any]:
    """Everything the snapshot's key is made of (snapshot_cache.py)."""
    domain_type, _why = choose_domain_type(profile.accel)
    conn = open_connection(profile.uri)
    try:
        host = host_parts(conn)
    finally:
        conn.close()
    return {**machine_parts(profile, domain_type), "host": host, "guest": point.key_parts(guest, profile, sensor)}


def ensure_snapshot(profile: Profile, guest: Any, sensor: str, point: SnapshotPoint, progress: Progress) -> Snapshot:
    """The cached snapshot for these inputs, made first if there is none (under a lock: another
    thread or process making the same one is waited for)."""
    parts = snapshot_parts(profile, guest, sensor, point)
    key = snapshot_key(parts)
    if (found := load(entry_dir(key), key)) is not None:
        progress(f"fast path: snapshot cached (key {key[:12]})")
        return found
    with building(key) as entry:
        if (found := load(entry, key)) is not None:
            progress(f"fast path: snapshot cached (key {key[:12]}, made by another user meanwhile)")
            return found
        reset_entry(entry)
        progress(f"fast path: making the snapshot (key {key[:12]}) in {entry}")
        start = time.monotonic()
        # No network: a restored machine's forwarded SSH port would be the saving machine's.
        spec = MachineSpec(profile=profile, guest=guest, artifacts=entry / "build", run_id=new_run_id(),
                           test_id="fast path snapshot", slot=f"snap-{key[:8]}", sensor=sensor, network=False)
        machine = SnapshotMachine(spec, progress=progress)
        try:
            point.arm(machine.backend)
            machine.backend.prepare_first_boot(machine)
            point.make_placeholder(machine)
            disk_bytes = machine.disk.stat().st_size
            machine.boot()
            transcript, events = machine.save_at(point.marker, entry / IMAGE, profile.timeouts.boot)
        finally:
            machine.close()
        if not (entry / IMAGE).is_file():
            raise InfraError(f"libvirt saved no image at {entry / IMAGE} (artifacts: {entry / 'build'})")
        (entry / IMAGE).chmod(0o444)
        built_s = time.monotonic() - start
        write_manifest(entry, key, parts, transcript, events, disk_bytes, machine.artifacts, built_s)
        progress(f"fast path: snapshot made in {built_s:.1f} s ({(entry / IMAGE).stat().st_size / 1e6:.0f} MB)")
        prune(entry)
        made = load(entry, key)
    if made is None:
        raise InfraError(f"the snapshot in {entry} is incomplete after its build (artifacts: {entry / 'build'})")
    return made


def with_threshold(profile: Profile, confirm_loop: bool) -> Profile:
    """The profile the restored machines are judged with: the first crash ends it when the loop is
    not confirmed."""
    return profile if confirm_loop else dataclasses.replace(profile, boot_loop_threshold=1)
