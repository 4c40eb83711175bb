"""Find and remove what killed runs left behind: their domains and their disk images.

A domain is ours only when its name has our prefix AND it carries the harness
metadata element (vm-templates: <harness:vm> with the run, test, artifacts
directory and owner pid). A domain whose owner process still runs is in use and
left alone. Nothing else is touched: not a foreign domain, not a serial log, not
a verdict; only the per-test disk images of the runs whose domains were swept.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from .vm.connection import open_connection
from .vm.templates import METADATA_NS

# Per-test disk images the harness makes inside an artifacts directory.
DISK_IMAGES = ("data-disk.img", "disk.qcow2", "OVMF_VARS.fd")


@dataclass(frozen=True)
class OwnedDomain:
    name: str
    run: str
    artifacts: Path
    owner_pid: int

    def owner_alive(self) -> bool:
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
    return OwnedDomain(dom.name(), text("run"), Path(artifacts), pid)


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
    also remove disk images left in artifact directories that no running domain of ours uses."""
    result = SweepResult()
    conn = open_connection(uri)
    try:
        live_dirs: set[Path] = set()
        for dom in conn.listAllDomains():
            owned = owned_domain(dom, prefix)
            if owned is None:
                continue
            if owned.owner_alive() and not force:
                result.in_use.append(owned.name)
                live_dirs.add(owned.artifacts)
                continue
            progress(f"clean: destroying {owned.name} (run {owned.run}, owner pid {owned.owner_pid} gone)")
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
        if artifacts_root is not None and artifacts_root.is_dir():
            for directory in artifacts_root.glob("*/*"):
                if directory.is_dir() and directory not in live_dirs:
                    _remove_disks(directory, result)
    finally:
        conn.close()
    for path in result.removed_files:
        progress(f"clean: removed {path}")
    return result
