"""Restoring the next file's machine while the current one runs.

A restore needs no content: the guest waits at its snapshot point for a disk that is not the
placeholder, and it runs only once resumed. So while one file is judged, the judge restores
the next variant (variants.py) in a background thread, paused, with a fresh, empty data disk and
its serial log (the transcript first) in a lane directory of its own. The next judge() writes
the file's disk image into that disk (in place: QEMU has it open), links the disk and the log
into the file's artifacts directory, and adopts the domain (SnapshotMachine.adopt): the restore,
the largest part of a restore-based verdict, is then off the file's time wherever a core was
free. A spare nobody takes (a bigger disk, the judge closed) is destroyed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import libvirt

from ..errors import HarnessError, InfraError
from ..vm.connection import destroy_by_name, open_connection
from ..vm.snapshot import owner_metadata, restore_xml
from ..vm.snapshot_cache import Snapshot
from .variants import VariantPool

SPARE_WAIT_S = 120.0


@dataclass
class Spare:
    index: int  # the variant it was restored from
    name: str  # its domain
    lane: Path  # its data disk and serial log
    xml: str  # the restore XML it was restored with
    restore_s: float  # virDomainRestoreFlags, in the background

    @property
    def disk(self) -> Path:
        return self.lane / "data-disk.img"

    @property
    def log(self) -> Path:
        return self.lane / "serial.log"


class Ahead:
    def __init__(self, snapshot: Snapshot, pool: VariantPool, uri: str, run_id: str, say: Callable[[str], None]) -> None:
        self.snapshot = snapshot
        self.pool = pool
        self.uri = uri
        self.run_id = run_id
        self.say = say
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastpath-ahead")
        self._future: Future[Spare] | None = None
        self._seq = itertools.count()

    def start(self, index: int, name: str) -> None:
        """Restore variant `index` as domain `name` in the background."""
        self._future = self._executor.submit(self._restore, index, name, next(self._seq))

    def take(self) -> Spare | None:
        """The spare restored ahead (waiting for it), or None when there is none or it failed."""
        future, self._future = self._future, None
        if future is None:
            return None
        try:
            return future.result(timeout=SPARE_WAIT_S)
        except (HarnessError, libvirt.libvirtError, OSError, TimeoutError) as exc:
            self.say(f"fast path: restoring ahead failed, restoring now instead: {exc}")
            return None

    def _restore(self, index: int, name: str, seq: int) -> Spare:
        variant = self.pool.take(name, index)  # its last machine gone, its image made
        assert variant.image is not None
        lane = self.pool.work / f"lane-{seq}"
        lane.mkdir()
        spare = Spare(index, name, lane, "", 0.0)
        with open(spare.disk, "wb") as disk:  # filled with the file's disk before the resume
            disk.truncate(self.snapshot.disk_bytes)
        spare.log.write_text(self.snapshot.transcript)  # libvirt appends the restored output
        spare.xml = restore_xml(variant.xml, owner_metadata(self.run_id, "fast path (restored ahead)", lane),
                                self.snapshot.machine_dir, lane)
        conn = open_connection(self.uri)
        start = time.monotonic()
        try:
            conn.restoreFlags(str(variant.image), spare.xml, libvirt.VIR_DOMAIN_SAVE_PAUSED)
        except libvirt.libvirtError as exc:
            shutil.rmtree(lane, ignore_errors=True)
            raise InfraError(f"libvirt could not restore {variant.image} ahead: {exc.get_error_message()}") from None
        finally:
            conn.close()
        spare.restore_s = time.monotonic() - start
        return spare

    @staticmethod
    def fill(spare: Spare, disk: Path, serial_log: Path) -> None:
        """Write the file's disk image `disk` into the spare's disk (in place), then put the spare's
        disk and serial log at `disk` and `serial_log` (hard links; a copy of the log when the
        artifacts are on another file system, made again when the machine is gone)."""
        size = disk.stat().st_size
        with open(disk, "rb") as src, open(spare.disk, "r+b") as dst:
            done = 0
            while done < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - done, done, done)
                if n <= 0:
                    raise InfraError(f"copying {disk} into {spare.disk} stopped at byte {done}")
                done += n
        for source, target in ((spare.disk, disk), (spare.log, serial_log)):
            tmp = target.with_name(f".{target.name}.link")
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)
                os.replace(tmp, target)
            except OSError:
                if source is spare.log:
                    shutil.copyfile(source, target)

    @staticmethod
    def finish(spare: Spare, serial_log: Path) -> None:
        """Once its machine is gone: the log into the artifacts if it was copied, the lane removed."""
        with contextlib.suppress(OSError):
            if not os.path.samefile(spare.log, serial_log):
                shutil.copyfile(spare.log, serial_log)
        shutil.rmtree(spare.lane, ignore_errors=True)

    def discard(self, spare: Spare) -> None:
        destroy_by_name(self.uri, spare.name)
        shutil.rmtree(spare.lane, ignore_errors=True)

    def close(self) -> None:
        """Destroy a spare nobody took; stop the background thread."""
        spare = self.take()
        if spare is not None:
            self.discard(spare)
        self._executor.shutdown(wait=True)
