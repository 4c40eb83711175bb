"""Find and remove what killed runs left behind: their domains and their disk images.

A domain is ours only when its name has our prefix AND it carries the harness
metadata element (vm-templates: <harness:vm> with the run, test, artifacts
directory, owner pid and owner lock). A domain whose owner process still runs is
in use and left alone. "Still runs" is the owner's lock (vm/ownership.py): held
by a live process, free from the moment it dies, whatever the pid table says (a
SIGKILLed run stays a zombie where PID 1 does not reap; a pid can be reused). The
pid is asked only when the metadata names no lock file that exists.

Nothing else is touched: not a foreign domain, not a serial log, not
a verdict; only the per-test disk images of the runs whose domains were swept.

A profile may run on several libvirt hosts: `sweep_hosts` sweeps each, and scans
the artifacts for stray disk images only once every host was seen (a domain on
any host may still use one). The owner pid is a pid of the machine that ran the
harness: a domain whose metadata names another owner machine (<harness:host>)
is left alone, since its process cannot be judged from here.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from .errors import InfraError
from .vm.connection import open_connection
from .vm.ownership import lock_held, remove_dead_locks
from .vm.templates import METADATA_NS

# Per-test disk images the harness makes inside an artifacts directory.
DISK_IMAGES = ("data-disk.img", "disk.qcow2", "OVMF_VARS.fd")


@dataclass(frozen=True)
class OwnedDomain:
    name: str
    run: str
    artifacts: Path
    owner_pid: int
    owner_host: str = ""  # the machine the owner pid lives on ("" in older metadata: this one)
    owner_lock: Path | None = None  # the lock the owner holds for its whole life

    def owner_alive(self) -> bool:
        if self.owner_host and self.owner_host != socket.gethostname():
            return True  # another machine's process: not ours to judge
        held = lock_held(self.owner_lock) if self.owner_lock else None
        if held is not None:
            return held
        if self.owner_pid <= 0:
            return False
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class SweepResult:
    destroyed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    removed_files: list[Path] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # swept
    unreachable: dict[str, str] = field(default_factory=dict)  # host URI -> the InfraError's message


def owned_domain(dom: libvirt.virDomain, prefix: str) -> OwnedDomain | None:
    """The harness metadata of `dom`, or None when the domain is not ours."""
    if not dom.name().startswith(prefix + "-"):
        return None
    try:
        xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    except libvirt.libvirtError:
        return None  # no harness metadata: not ours, whatever its name
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None

    def text(tag: str) -> str:
        # libvirt hands the element back without its namespace prefix: match local names.
        node = next((n for n in root if n.tag.rsplit("}", 1)[-1] == tag), None)
        return (node.text or "").strip() if node is not None else ""

    try:
        pid = int(text("pid") or 0)
    except ValueError:
        pid = 0
    artifacts = text("artifacts")
    if not artifacts:
        return None
    lock = text("lock")
    return OwnedDomain(dom.name(), text("run"), Path(artifacts), pid, text("host"), Path(lock) if lock else None)


def _remove_disks(directory: Path, result: SweepResult) -> None:
    for name in DISK_IMAGES:
        for image in [directory / name, *directory.glob(f"recovery-*/{name}"),
                      *directory.glob("recovery-*/medium.img")]:
            if image.exists():
                image.unlink()
                result.removed_files.append(image)


def sweep(uri: str, prefix: str = "harness", artifacts_root: Path | None = None, force: bool = False,
          progress: Callable[[str], None] = lambda _m: None) -> SweepResult:
    """Destroy our leaked domains on `uri` and remove their disk images; with `artifacts_root`,
    also remove disk images left in artifact directories that no running domain of ours uses.
    Raises InfraError when the host cannot be reached."""
    result = sweep_hosts([uri], prefix, artifacts_root, force, progress)
    if result.unreachable:
        raise InfraError(result.unreachable[uri])
    return result


def sweep_hosts(uris: list[str] | tuple[str, ...], prefix: str = "harness", artifacts_root: Path | None = None,
                force: bool = False, progress: Callable[[str], None] = lambda _m: None) -> SweepResult:
    """`sweep` over every host in `uris`. A host that cannot be reached is recorded in
    `unreachable` and the others are still swept; the artifacts scan is then skipped (that
    host's running domains may still use disk images)."""
    result = SweepResult()
    live_dirs: set[Path] = set()
    for uri in dict.fromkeys(uris):
        try:
            _sweep_host(uri, prefix, force, progress, result, live_dirs)
        except InfraError as exc:
            result.unreachable[uri] = str(exc)
            progress(f"clean: {exc}")
            continue
        result.hosts.append(uri)
    if artifacts_root is not None and artifacts_root.is_dir():
        if result.unreachable:
            progress(f"clean: {artifacts_root} not scanned for stray disk images: "
                     f"{', '.join(result.unreachable)} could not be reached")
        else:
            for directory in artifacts_root.glob("*/*"):
                if directory.is_dir() and directory not in live_dirs:
                    _remove_disks(directory, result)
    for path in result.removed_files:
        progress(f"clean: removed {path}")
    remove_dead_locks()
    return result


def _sweep_host(uri: str, prefix: str, force: bool, progress: Callable[[str], None], result: SweepResult,
                live_dirs: set[Path]) -> None:
    conn = open_connection(uri)
    try:
        for dom in conn.listAllDomains():
            owned = owned_domain(dom, prefix)
            if owned is None:
                continue
            if owned.owner_alive() and not force:
                result.in_use.append(owned.name)
                live_dirs.add(owned.artifacts)
                continue
            progress(f"clean: destroying {owned.name} on {uri} (run {owned.run}, owner pid {owned.owner_pid} gone"
                     + (f", its lock {owned.owner_lock} free)" if owned.owner_lock else ")"))
            try:
                persistent = dom.isPersistent()  # a transient domain is gone once destroyed
                if dom.isActive():
                    dom.destroy()
                if persistent:
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError as exc:
                progress(f"clean: {owned.name}: {exc.get_error_message()}")
                continue
            result.destroyed.append(owned.name)
            _remove_disks(owned.artifacts, result)
    finally:
        conn.close()
