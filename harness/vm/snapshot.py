"""A machine saved at a point of its boot, and machines restored from that memory image.

`SnapshotMachine` is a `Machine` with two more ways to start and stop: `save_at()` waits for a
console line (the family's snapshot point) and saves the running domain's memory to a file
(virDomainSaveFlags; the domain is gone afterwards), and `restore()` starts a domain from such a
file (virDomainRestoreFlags, paused) with a restore XML of its own, then watches it exactly as
`boot()` does: the same event recorder, console reader and monitor. The console text of the boot
up to the point (the transcript, saved with the image) is fed to the monitor and written to the
serial log first, so a restored machine is judged as the boot it continues.

`restore_xml()` makes the XML a restore passes: the saved XML (only what libvirt calls host
specific may differ from it: paths, metadata) with every file path under the saving machine's
artifacts directory moved under this machine's (its disks, its serial log) and this machine's
metadata (owner, test, artifacts), so the sweep and the artifacts treat it as any other machine.

Nothing here knows a guest family: which line marks the point and how the family's boot is made
to stop there is the family's (`SnapshotPoint`, backend.py).
"""

from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from ..artifacts import write_atomic
from ..errors import ConsoleTimeout, InfraError
from .events import EventRecorder
from .machine import Machine
from .observations import Observation
from .ownership import process_lock
from .save_image import to_string
from .templates import METADATA_NS

ET.register_namespace("harness", METADATA_NS)
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")
# Lifecycle events of the saving boot that a restored machine's monitor is told about (the
# save's own suspended/stopped events are not: they describe the snapshot, not the boot).
SEEDED_EVENTS = ("lifecycle:started:", "lifecycle:resumed:")


def restore_xml(saved_xml: str, fresh_xml: str, saved_dir: Path, new_dir: Path) -> str:
    """The XML to restore `saved_xml` with: paths under `saved_dir` moved to `new_dir`, the
    metadata of `fresh_xml` (this machine's own domain XML)."""
    root = ET.fromstring(saved_xml)
    for node in root.iter():
        for attr in ("file", "path"):
            value = node.get(attr)
            if value and Path(value).is_relative_to(saved_dir):
                node.set(attr, str(new_dir / Path(value).relative_to(saved_dir)))
    fresh = ET.fromstring(fresh_xml).find("metadata")
    old = root.find("metadata")
    if fresh is not None:
        if old is not None:
            root.remove(old)
        root.insert(min(3, len(root)), fresh)
    return to_string(root)


class SnapshotMachine(Machine):
    """A Machine that can be saved at its snapshot point, or started from a saved image."""

    def save_at(self, marker: re.Pattern[str], image: Path, timeout: float) -> tuple[str, list[str]]:
        """Wait for `marker` on the console of the running boot, then save the domain to `image`
        (the domain stops). Returns the console transcript up to the save and the lifecycle
        events of the boot so far."""
        if self.dom is None:
            raise InfraError(f"{self.name} is not running: boot() it first (artifacts: {self.artifacts})")
        try:
            self.expect(marker.pattern, timeout=timeout)
        except ConsoleTimeout as exc:
            raise InfraError(f"the snapshot boot never reached its snapshot point: {exc}") from None
        with self.cond:
            events = [name for name in self.monitor.events if name.startswith(SEEDED_EVENTS)]
        try:
            self.dom.saveFlags(str(image), None, libvirt.VIR_DOMAIN_SAVE_PAUSED)
        except libvirt.libvirtError as exc:
            self.destroy()
            raise InfraError(f"saving {self.name} to {image} failed: {exc.get_error_message()} "
                             f"(artifacts: {self.artifacts})") from None
        self._stop_watching()  # the saved domain is gone; its console stream has ended
        return self.buffer.text, events

    def restore(self, image: Path, xml: str, transcript: str, events: list[str]) -> None:
        """Start the domain from `image` with the restore XML `xml`, paused; watch it as boot()
        does, with the transcript and events of the boot it continues fed first; then resume."""
        if self.dom is not None:
            raise InfraError(f"{self.name} is already running; destroy() it first")
        write_atomic(self.artifacts / "domain.xml", xml)
        self.serial_log.write_text(transcript)  # libvirt appends the restored machine's output
        self._connect("restore")
        try:
            self.conn.restoreFlags(str(image), xml, libvirt.VIR_DOMAIN_SAVE_PAUSED)  # type: ignore[union-attr]
        except libvirt.libvirtError as exc:
            raise InfraError(f"libvirt could not restore {image}: {exc.get_error_message()} "
                             f"(restore XML: {self.artifacts / 'domain.xml'})") from None
        self._watch_restored(transcript, events, str(image))

    def adopt(self, xml: str, transcript: str, events: list[str]) -> None:
        """Watch the domain restored ahead under this machine's name (paused, its serial log
        already holding the transcript) as restore() does, then resume it."""
        if self.dom is not None:
            raise InfraError(f"{self.name} is already running; destroy() it first")
        write_atomic(self.artifacts / "domain.xml", xml)
        self._connect("restore")
        self._watch_restored(transcript, events, "restored ahead")

    def _watch_restored(self, transcript: str, events: list[str], image: str) -> None:
        assert self.conn is not None
        try:
            dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError as exc:
            raise InfraError(f"the restored domain {self.name} is gone: {exc.get_error_message()} "
                             f"(artifacts: {self.artifacts})") from None
        self._own(dom)
        self.mode = "normal"
        try:
            self.events = EventRecorder(self.conn, dom, self.artifacts / "events.jsonl", self._on_event, self.t0)
            self.events.record("harness:snapshot-boot", {"events": events, "transcript_bytes": len(transcript)})
            with self.cond:
                self.monitor.start_window(self.now(), new_boot=True)
            self._attach_consoles(dom)  # the domain is paused: nothing arrives before the transcript
            self.buffer.append(transcript)
            for line in transcript.splitlines():
                self._observe(Observation(self.now(), "console", line))
            for name in events:
                self._observe(Observation(self.now(), "event", name))
            self.events.record("harness:start", {"mode": "restore", "domain": self.name, "image": image})
            dom.resume()
        except libvirt.libvirtError as exc:
            self.destroy()
            raise InfraError(f"starting the restored {self.name} failed: {exc.get_error_message()} "
                             f"(artifacts: {self.artifacts})") from None


def owner_metadata(run_id: str, test_id: str, artifacts: Path) -> str:
    """A domain XML holding only the harness metadata of a domain this process owns (for
    restore_xml, when no machine renders one)."""
    root = ET.Element("domain")
    vm = ET.SubElement(ET.SubElement(root, "metadata"), f"{{{METADATA_NS}}}vm")
    for tag, value in (("run", run_id), ("test", test_id), ("artifacts", str(artifacts)), ("pid", str(os.getpid())),
                       ("lock", str(process_lock())), ("host", socket.gethostname())):
        ET.SubElement(vm, f"{{{METADATA_NS}}}{tag}").text = value
    return to_string(root)
