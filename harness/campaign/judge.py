"""How a campaign asks a machine what one content file does: the FileJudge interface.

A judge turns (guest file name, bytes) into a Verdict, with the run's console, events and
verdict.json written under the `artifacts` directory it is given. Two implement it:

- BootJudge (here): a fresh machine per file, booted from scratch, as `harness reproduce`
  does; an infrastructure failure is retried once (the retry's artifacts go to
  `artifacts/retry`, see `verdict_serial_log`).
- harness.fastpath.SnapshotJudge(profile, sensor, progress): a restored memory snapshot per
  file (issue 12 item 3). It is typed structurally: it does not import this module.

One judge is used by one thread at a time; a campaign with N workers makes N judges.
"""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

from ..artifacts import new_run_id, write_atomic
from ..config import Profile
from ..errors import InfraError
from ..monitor.verdict import Verdict
from ..vm.machine import Machine, MachineSpec
from ..vm.registry import family_plugin

Progress = Callable[[str], None]
RETRY_DIR = "retry"
DOMAIN_FILE = "domain.txt"  # the libvirt domain's name, written before it exists


class FileJudge(Protocol):
    def judge(self, name: str, data: bytes, artifacts: Path) -> Verdict:
        """Boot (or restore) a machine whose driver reads `data` as the content file `name`;
        the verdict of that machine, its artifacts under `artifacts` (created if missing)."""
        ...

    def close(self) -> None:
        """Release every machine and process the judge holds (idempotent)."""
        ...


def verdict_serial_log(artifacts: Path) -> Path:
    """The serial log of the run that gave a judge's verdict in `artifacts`: the retry's when
    the first attempt failed on infrastructure, else the first's."""
    retry = artifacts / RETRY_DIR / "serial.log"
    return retry if retry.exists() else artifacts / "serial.log"


class BootJudge:
    """A fresh machine per file: create, install the content, boot, wait for the verdict,
    close in the background (the next file does not wait for QEMU to exit)."""

    _judges = itertools.count()

    def __init__(self, profile: Profile, sensor: str | None, progress: Progress | None = None) -> None:
        self.profile = profile
        self.progress = progress or (lambda msg: print(f"harness: {msg}", file=sys.stderr, flush=True))
        self.guest: Any
        self.guest, self.sensor = family_plugin(profile.family).prepare(profile, sensor, self.progress)
        self.run_id = f"{new_run_id()}-j{next(self._judges)}"  # domain names unique across judges
        self._files = itertools.count()
        self._lock = threading.Lock()
        self._live: Machine | None = None
        self._closed = False

    def judge(self, name: str, data: bytes, artifacts: Path) -> Verdict:
        if self._closed:
            raise InfraError(f"BootJudge.judge after close (artifacts: {artifacts})")
        n = next(self._files)
        for attempt in (1, 2):
            directory = artifacts if attempt == 1 else artifacts / RETRY_DIR
            directory.mkdir(parents=True, exist_ok=True)
            machine = Machine(MachineSpec(profile=self.profile, guest=self.guest, artifacts=directory,
                                          run_id=self.run_id, test_id=f"campaign {name}", slot=f"f{n}a{attempt}",
                                          sensor=self.sensor), progress=self.progress)
            write_atomic(directory / DOMAIN_FILE, machine.name + "\n")
            with self._lock:
                closed = self._closed
                self._live = None if closed else machine
            if closed:  # close() ran while this file was being judged (Ctrl-C): no further machine
                machine.close(background=True)
                raise InfraError(f"the judge was closed while judging {name} (artifacts: {directory})")
            try:
                machine.install_content({name: data}, bad_update=True)
                machine.boot()
                verdict = machine.wait_verdict()
            except InfraError as exc:
                self._release(machine)
                if attempt == 2:
                    raise
                write_atomic(directory / "infra-error.txt", f"{exc}\n")
                self.progress(f"infrastructure failure, retrying once (artifacts: {directory})")
                continue
            self._release(machine)
            if verdict.verdict == "infra-error" and attempt == 1:
                self.progress(f"infra-error ({verdict.reason}), retrying once (artifacts: {directory})")
                continue
            return verdict
        raise AssertionError("unreachable")

    def _release(self, machine: Machine) -> None:
        with self._lock:
            if self._live is machine:
                self._live = None
        machine.close(background=True)

    def close(self) -> None:
        """Close the machine of a judge interrupted mid-file (Ctrl-C); later judge() calls fail."""
        with self._lock:
            self._closed = True
            live, self._live = self._live, None
        if live is not None:
            live.close(background=True)
