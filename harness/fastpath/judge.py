"""SnapshotJudge: one content file's verdict from a restored memory snapshot (docs/fastpath.md).

For each file: a fresh data disk with the file (made as the boot path makes it), a restore of the
profile's snapshot with that disk in the placeholder's place, and the same monitor, console and
events as a boot; the verdict is the monitor's. A crashing file is confirmed as a boot loop by
real reboots of the restored machine (the profile's boot_loop_threshold), unless
`confirm_loop=False`: then the first crash is the verdict, and its reason says so. The restored
QEMU is torn down in the background (Machine.close(background=True)).

One judge per thread; each has its own copies of the snapshot under its own domain names.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..artifacts import new_run_id, write_atomic, write_json
from ..config import Profile
from ..errors import ConfigError, InfraError
from ..monitor.verdict import Verdict
from ..vm.registry import family_plugin, snapshot_point
from ..vm.snapshot import SnapshotMachine, restore_xml
from ..vm.snapshot_cache import work_dir
from ..vm.spec import MachineSpec
from .ahead import Ahead, Spare
from .build import ensure_snapshot, with_threshold
from .variants import VariantPool

Progress = Callable[[str], None]
UNCONFIRMED = ("the first crash ended the judgement: the boot loop was not confirmed by reboots "
               "(confirm_loop=False)")


def supports(profile: Profile) -> bool:
    """Whether `profile` can use the fast path (harness.campaign.path_choice asks)."""
    return fast_path_refusal(profile) is None


def fast_path_refusal(profile: Profile) -> str | None:
    """Why `profile` cannot use the snapshot fast path (one line), or None when it can."""
    if not profile.fast_path:
        return (f"profile {profile.name}: fast_path is false: its files are judged by booting each one "
                "(the boot path)")
    if snapshot_point(profile.family) is None:
        return (f"profile {profile.name}: family {profile.family} has no snapshot point: its driver starts "
                "at boot, so each file is judged by a boot (the boot path; docs/fastpath.md)")
    uris = profile.uris or (profile.uri,)
    if any(not uri.startswith("qemu:///") for uri in uris):
        return (f"profile {profile.name}: the fast path restores snapshots kept on this machine; "
                f"{', '.join(uris)} is not a local libvirt (qemu:///...): use the boot path")
    return None


class SnapshotJudge:
    def __init__(self, profile: Profile, sensor: str | None, progress: Progress | None = None,
                 confirm_loop: bool = True) -> None:
        refusal = fast_path_refusal(profile)
        if refusal is not None:
            raise ConfigError(refusal)
        self.say: Progress = progress or (lambda _msg: None)
        self.confirm_loop = confirm_loop
        self.point = snapshot_point(profile.family)
        assert self.point is not None
        self.guest, self.build = family_plugin(profile.family).prepare(profile, sensor, self.say)
        self.profile = with_threshold(profile, confirm_loop)
        self.snapshot = ensure_snapshot(profile, self.guest, self.build, self.point, self.say)
        self._work = contextlib.ExitStack()
        work = self._work.enter_context(work_dir(self.snapshot.entry))
        self.run_id = new_run_id()
        self.pool = VariantPool(self.snapshot.image, work, f"fp{secrets.token_hex(2)}")
        for index, variant in enumerate(self.pool.variants):  # copied now, not on a file's time
            self.pool.take(self._domain_name(variant.slot), index)
        self.ahead = Ahead(self.snapshot, self.pool, profile.uri, self.run_id, self.say)
        self._start_ahead()  # the first file's machine, restored while the caller gets its file
        self.last: dict[str, Any] = {}  # timings of the last file (bench/campaign.py)
        self.closed = False
        self._lock = threading.Lock()
        self._live: SnapshotMachine | None = None  # the machine of the file being judged

    def _start_ahead(self) -> None:
        index = self.pool.next_index()
        self.ahead.start(index, self._domain_name(self.pool.variants[index].slot))

    def _domain_name(self, slot: str) -> str:
        return f"{self.profile.name_prefix}-{self.run_id}-{slot}"  # as Machine names it

    def judge(self, name: str, data: bytes, artifacts: Path) -> Verdict:
        """The verdict on `data` placed as content file `name`; artifacts (serial.log, events.jsonl,
        verdict.json, domain.xml, content/, fastpath.json) go to `artifacts`. An infrastructure
        failure is retried once (in artifacts/retry)."""
        if self.closed:
            raise InfraError("this SnapshotJudge is closed")
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            verdict = self._judge_once(name, data, artifacts)
        except InfraError as exc:
            self.say(f"fast path: infrastructure failure, retrying once: {exc}")
            return self._judge_once(name, data, artifacts / "retry")
        if verdict.verdict == "infra-error":
            self.say(f"fast path: infra-error ({verdict.reason}), retrying once")
            return self._judge_once(name, data, artifacts / "retry")
        return verdict

    def _judge_once(self, name: str, data: bytes, artifacts: Path) -> Verdict:
        start = time.monotonic()
        artifacts.mkdir(parents=True, exist_ok=True)
        spare: Spare | None = self.ahead.take()  # restored while the last file was judged
        index = spare.index if spare is not None else self.pool.next_index()
        if not self.closed:
            self._start_ahead()  # the next file's machine restores while this one runs
        slot = self.pool.variants[index].slot
        machine = SnapshotMachine(MachineSpec(
            profile=self.profile, guest=self.guest, artifacts=artifacts, run_id=self.run_id,
            test_id=f"fast path {name}", slot=slot, sensor=self.build, network=False), progress=self.say)
        write_atomic(artifacts / "domain.txt", machine.name + "\n")  # as BootJudge: named before it exists
        with self._lock:
            closed = self.closed
            self._live = None if closed else machine
        if closed:  # close() ran meanwhile (Ctrl-C): no machine of this file
            if spare is not None:
                self.ahead.discard(spare)
            raise InfraError(f"the judge was closed while judging {name} (artifacts: {artifacts})")
        path = "snapshot"
        restore_s = None
        ahead = False
        variant = self.pool.variants[index]
        try:
            variant = self.pool.take(machine.name, index)
            machine.install_content({name: data}, bad_update=True)
            self.point.arm(machine.backend)  # a reset of the restored machine boots past the point
            machine.backend.prepare_first_boot(machine)
            size = machine.disk.stat().st_size
            t_restore = time.monotonic()
            if size != self.snapshot.disk_bytes:
                # The guest sized its disk at the point; a bigger file needs a bigger disk: boot it
                # (not a placeholder, so the init goes straight on).
                path = "boot"
                self.say(f"fast path: {name} needs a {size}-byte disk, the snapshot's is "
                         f"{self.snapshot.disk_bytes} bytes: judged by a boot")
                if spare is not None:  # its domain has this machine's name
                    self.ahead.discard(spare)
                    spare = None
                machine.boot()
            elif spare is not None:
                Ahead.fill(spare, machine.disk, machine.serial_log)
                machine.adopt(spare.xml, self.snapshot.transcript, self.snapshot.events)
                ahead = True
            else:
                assert variant.image is not None
                xml = restore_xml(variant.xml, machine.domain_xml("normal"), self.snapshot.machine_dir,
                                  machine.artifacts)
                machine.restore(variant.image, xml, self.snapshot.transcript, self.snapshot.events)
            restore_s = spare.restore_s if ahead and spare is not None else time.monotonic() - t_restore
            verdict = machine.wait_verdict()
            problem = self.point.problem(machine.buffer.text)
            if problem is not None:
                raise InfraError(f"{problem} (artifacts: {artifacts})")
        finally:
            with self._lock:
                self._live = None
            if spare is not None and not ahead:  # restored ahead, never adopted: nobody else destroys it
                self.ahead.discard(spare)
            variant.closing = machine.closed or machine.close(background=True)
            if spare is not None and ahead:
                log = machine.serial_log
                variant.closing.add_done_callback(lambda _done: Ahead.finish(spare, log))
        if path == "boot":
            verdict.reason += " (judged by a boot: the file's disk is not the snapshot's size)"
        if not self.confirm_loop and verdict.verdict == "boot-loop":
            verdict.reason += f"; {UNCONFIRMED}"
        machine.write_verdict()
        self.last = {"path": path, "restore_s": restore_s, "restored_ahead": ahead, "verdict_s": time.monotonic() - start,
                     "verdict": verdict.verdict, "domain": machine.name, "snapshot": self.snapshot.key[:16],
                     "confirm_loop": self.confirm_loop}
        write_json(artifacts / "fastpath.json", self.last)
        return verdict

    def close(self) -> None:
        """Close the machine of a file being judged (Ctrl-C from another thread), wait for the
        last restored machines to be torn down, remove this judge's image copies (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            live, self._live = self._live, None
        if live is not None:  # its QEMU keeps the image copy it restored from open: removing it is safe
            live.close(background=True)
        try:
            self.ahead.close()
            self.pool.drain()
        finally:
            self._work.close()

    def __enter__(self) -> SnapshotJudge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
