"""One test machine: a transient libvirt domain over the machine's own disks.

Lifecycle of a boot: render the domain XML, create the domain paused, attach
the event recorder and the console readers, resume (so no early byte is lost).
The monitor judges what arrives. Teardown closes the console streams before it
destroys the domain, then removes the per-test disks; close(background=True)
leaves that part to a background worker (teardown.py). What depends on the guest
family (disks, domain XML, ports, content placement) is the backend's job
(backend.py): the Linux reference guest or Windows.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import libvirt
import paramiko

from ..artifacts import write_atomic, write_json
from ..crash.report import CrashReport
from ..errors import ConsoleTimeout, HarnessError, InfraError
from ..monitor.monitor import Monitor
from ..monitor.verdict import Verdict
from . import teardown
from .accel import choose_domain_type
from .backend import ConsolePort
from .connection import destroy_by_name, keep_domain_log, open_connection
from .console import ConsoleBuffer, ConsoleReader, stream_stall_note
from .crash_watch import crash_probe, crash_titles
from .events import EventRecorder
from .guest_agent import GuestAgent
from .observations import Observation
from .spec import JsonRecord, MachineSpec, make_backend, notify_new_machine
from .ssh import CommandResult, SshSession, free_port, new_client_key
from .transport import CrashProbe, SshTransport

Progress = Callable[[str], None]
TEARDOWN_TIMEOUT_S = 120.0  # destroying a domain and removing its disks, when a caller waits


class Machine:
    def __init__(self, spec: MachineSpec, progress: Progress | None = None) -> None:
        self.spec = spec
        self.profile = spec.profile
        self.progress = progress or (lambda _msg: None)
        self.artifacts = spec.artifacts
        self.name = f"{self.profile.name_prefix}-{spec.run_id}-{spec.slot}"
        self.owner_pid = os.getpid()
        self.backend = make_backend(spec)
        self.ports: tuple[ConsolePort, ...] = self.backend.consoles(self)
        self.serial_log = self.ports[0].log  # the primary console's durable record
        self.disk = self.backend.disks(self)[0]
        self.sensor = spec.sensor or self.profile.sensor
        self.network = False
        self.ssh_port: int | None = None
        self.client_key: paramiko.PKey | None = None
        if spec.network if spec.network is not None else self.profile.network == "user":
            self.enable_network()
        self.delivered: dict[str, bytes] = dict(spec.content)  # every content file fed, by name
        self.bad_update: set[str] = set()  # the files recovery scripts are told to remove
        self.recoveries: dict[str, JsonRecord] = {}  # recovery results by path (harness.recovery)
        self.mode = "off"  # off | normal | safe | recovery: what the running domain booted
        if spec.disk_from is not None:
            shutil.copyfile(spec.disk_from, self.disk)
        self.domain_type, self.accel_reason = choose_domain_type(self.profile.accel)
        self.conn: libvirt.virConnect | None = None
        self.dom: libvirt.virDomain | None = None
        self.console: ConsoleReader | None = None
        self.marker_readers: list[ConsoleReader] = []  # further ports (COM2 of a Windows guest)
        self.events: EventRecorder | None = None
        self.buffer = ConsoleBuffer()
        self.marker_buffer = ConsoleBuffer(256 << 10)  # the marker ports' text (COM2 of a Windows guest)
        self.domain_started_at: tuple[int, int] = (0, 0)  # buffer offsets where the running domain began
        self.monitor = Monitor(self.backend.family, self.profile.boot_loop_threshold, self.profile.timeouts.grace)
        self.cond = threading.Condition()
        self.t0 = time.monotonic()
        self.verdict: Verdict | None = None  # the last one
        self.verdicts: list[Verdict] = []  # every verdict of this machine's life, in order
        self._ssh: SshSession | None = None
        self._boots_started = 0
        self.closed: Future[None] | None = None  # the background teardown, once close() ran
        self._closing = False
        notify_new_machine(self)

    # ------------------------------------------------------------- helpers

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _observe(self, obs: Observation) -> None:
        with self.cond:
            observe = {"console": self.monitor.observe_line, "event": self.monitor.observe_event}
            observe.get(obs.source, self.monitor.observe_closed)(obs.text, obs.t)
            self.cond.notify_all()

    def _on_line(self, line: str) -> None:
        self._observe(Observation(self.now(), "console", line))

    def _on_marker_line(self, line: str) -> None:
        if "HARNESS-" in line or self.monitor.markers.knows(line):  # the driver's own lines too
            self._observe(Observation(self.now(), "console", line))

    def _on_event(self, name: str, _entry: dict[str, Any]) -> None:
        if name.startswith("lifecycle:crashed"):
            for line in self.backend.crash_lines(self):  # e.g. Windows' "panic hyper-v: arg1=..." line
                self._observe(Observation(self.now(), "console", line))
        self._observe(Observation(self.now(), "event", name))

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self._observe(Observation(self.now(), "closed", f"connection closed (reason {reason})"))

    def enable_network(self) -> None:
        """User networking, SSH forwarded to 127.0.0.1; before the first boot (the disk gets the key)."""
        if self.disk.exists():
            raise HarnessError("enable_network() must come before the first boot")
        self.network = True
        self.ssh_port = free_port()
        self.client_key = self.backend.login_key() or new_client_key()

    # ------------------------------------------------------------- content

    def install_content(self, files: dict[str, bytes], bad_update: bool = False) -> None:
        """Offline placement: the files are on the data disk at the first boot (boot-start case).
        `bad_update` names them as the update a recovery script must remove."""
        if self.disk.exists():
            raise HarnessError("install_content() places files before the first boot; the data disk "
                               "exists already: use put_content_online() on a running machine")
        self.spec.content.update(files)
        self._keep_content_copies(files, bad_update)

    def _keep_content_copies(self, files: dict[str, bytes], bad_update: bool = False) -> None:
        self.delivered.update(files)
        if bad_update:
            self.bad_update.update(files)
        target = self.artifacts / "content"
        target.mkdir(exist_ok=True)
        for name, data in files.items():
            write_atomic(target / name, data)

    # ---------------------------------------------------------------- boot

    def domain_xml(self, mode: str = "normal") -> str:
        """The domain for a boot in `mode`: normal, safe (sensor skipped) or recovery."""
        return self.backend.domain_xml(self, mode)

    def boot(self, mode: str = "normal") -> None:
        """Start the domain (creating the data disk at the first boot) and watch it."""
        if self.dom is not None:
            raise HarnessError(f"{self.name} is already running; destroy() it first")
        if not self.disk.exists():
            self.backend.prepare_first_boot(self)
        xml = self.domain_xml(mode)
        write_atomic(self.artifacts / "domain.xml", xml)
        conn = self._connect("boot", f"{mode}, ")
        try:
            dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            raise InfraError(f"libvirt refused the domain: {exc.get_error_message()} "
                             f"(domain XML: {self.artifacts / 'domain.xml'})") from None
        self._own(dom)
        self.mode = mode
        try:
            self.events = EventRecorder(conn, dom, self.artifacts / "events.jsonl", self._on_event, self.t0)
            self._attach_consoles(dom)
            with self.cond:
                self.monitor.start_window(self.now(), new_boot=True)
            self.events.record("harness:start", {"mode": mode, "domain": self.name})
            dom.resume()
        except libvirt.libvirtError as exc:
            self.destroy()  # never leave a paused domain behind
            raise InfraError(f"starting {self.name} failed: {exc.get_error_message()} "
                             f"(artifacts: {self.artifacts})") from None

    def _connect(self, start: str, detail: str = "") -> libvirt.virConnect:
        """The libvirt connection (opened once, its closing watched); counts and says one start."""
        if self.conn is None:
            self.conn = open_connection(self.profile.uri)
            self.conn.registerCloseCallback(self._on_close, None)
        self._boots_started += 1
        self.progress(f"{self.name}: {start} {self._boots_started} ({detail}{self.sensor} sensor, "
                      f"domain type {self.domain_type})")
        return self.conn

    def _own(self, dom: libvirt.virDomain) -> None:
        """Hold a domain libvirt just started; destroy it at once if close() ran meanwhile (Ctrl-C)."""
        with self.cond:
            closing, self.dom = self._closing, (None if self._closing else dom)
        if closing:
            self._destroy_domain(dom)
            raise InfraError(f"{self.name} was closed while it started (artifacts: {self.artifacts})")

    def _attach_consoles(self, dom: libvirt.virDomain) -> None:
        """Read the domain's consoles into the reopened buffers; awaited markers count from here."""
        self.buffer.reopen()
        self.marker_buffer.reopen()
        self.domain_started_at = (self.buffer.end, self.marker_buffer.end)
        self.console = ConsoleReader(self.conn, dom, self._on_line, self.buffer, self.ports[0].device)
        self.marker_readers = [
            ConsoleReader(self.conn, dom, self._on_marker_line if port.markers_only else self._on_line,
                          self.marker_buffer, port.device) for port in self.ports[1:]]

    def wait_verdict(self, timeout: float | None = None, hang_timeout: float | None = None) -> Verdict:
        """Block until the monitor names an outcome (or the timeouts pass); record it."""
        limit = timeout or self.profile.timeouts.boot
        hang = hang_timeout or self.profile.timeouts.hang
        with self.cond:
            deadline = self.now() + limit
            while True:
                now = self.now()
                verdict = self.monitor.decide(now, hang_timeout=hang, deadline=deadline)
                if verdict is not None:
                    break
                pending = [deadline, self.monitor.quiet_since() + hang]
                boot = self.monitor.boots[-1] if self.monitor.boots else None
                if boot and boot.report_deadline and not boot.report_done:
                    pending.append(boot.report_deadline)
                self.cond.wait(max(0.01, min(pending) - now))
        self.verdict = verdict
        self.verdicts.append(verdict)
        if self.events:
            self.events.record("harness:verdict", {"verdict": verdict.verdict, "reason": verdict.reason})
        self.write_verdict()
        self.progress(f"{self.name}: {verdict.one_line()}")
        return verdict

    def write_verdict(self) -> None:  # verdict.json: the last verdict, with the recovery results so far
        if self.verdict is None:
            return
        write_json(self.artifacts / "verdict.json", {
            **self.verdict.to_json(), "domain": self.name, "domain_type": self.domain_type,
            "accel": self.accel_reason, "sensor": self.sensor, "profile": self.profile.name,
            "uri": self.profile.uri, "family": self.backend.family.name,
            "recovery": {path: r.to_json() for path, r in self.recoveries.items()},
            "serial_log": str(self.serial_log), "artifacts": str(self.artifacts)})

    def crashes_seen(self) -> list[str]:
        """Every crash title the monitor saw, verdict asked or not (in expect(), run(), a transport)."""
        return crash_titles(self.cond, self.monitor, self.now, self.profile.timeouts.grace,
                            lambda: self.dom is not None)

    def findings_seen(self) -> list[CrashReport]:
        """Every non-fatal report (a WARNING, a leak ...) the monitor saw in this machine's life."""
        with self.cond:
            return [finding for boot in self.monitor.boots for finding in boot.findings]

    def crash_probe(self) -> CrashProbe:  # for a command starting now (transport.CrashProbe)
        return crash_probe(self.cond, self.monitor, self.now)

    def wait_recovery_env(self, timeout: float | None = None, hang_timeout: float | None = None) -> tuple[str, str]:
        """Wait for a recovery-environment boot to run its script and power off."""
        limit = timeout or self.profile.timeouts.boot
        hang = hang_timeout or self.profile.timeouts.hang
        with self.cond:
            deadline = self.now() + limit
            while (outcome := self.monitor.decide_recovery_env(self.now(), hang, deadline)) is None:
                self.cond.wait(max(0.01, min(deadline, self.monitor.quiet_since() + hang) - self.now()))
        if self.events:
            self.events.record("harness:recovery-env", {"outcome": outcome[0], "reason": outcome[1]})
        return outcome

    # ------------------------------------------------------------- console

    def expect(self, pattern: str, timeout: float = 30.0, since: int | None = None) -> re.Match[str]:
        """Wait for `pattern` on the console (from `since`, default: the start of the buffer)."""
        return self._expect(self.buffer, "console", re.compile(pattern), timeout, since)

    def expect_marker(self, pattern: re.Pattern[str], timeout: float = 30.0,
                      this_domain: bool = False) -> re.Match[str]:
        """Wait for `pattern` on the marker ports (COM2; else the console); `this_domain`: its output only."""
        console, markers = self.domain_started_at if this_domain else (None, None)
        if self.ports[1:]:
            return self._expect(self.marker_buffer, "the marker port", pattern, timeout, markers)
        return self._expect(self.buffer, "console", pattern, timeout, console)

    def _expect(self, buffer: ConsoleBuffer, what: str, pattern: re.Pattern[str], timeout: float,
                since: int | None = None) -> re.Match[str]:
        match = buffer.search(pattern, buffer.start if since is None else since, timeout)
        if match is None:
            stalled = stream_stall_note(self.serial_log, pattern) if buffer is self.buffer else ""
            raise ConsoleTimeout(f"{what} did not show {pattern.pattern!r} within {timeout:.0f} s{stalled}; "
                                 f"last output:\n{buffer.tail(1500)}", self.artifacts)
        return match

    # ----------------------------------------------------------------- ssh

    def ssh(self) -> SshSession:
        if not self.network or self.ssh_port is None or self.client_key is None:
            raise HarnessError("this machine has no network: use a profile with network: user")
        if self._ssh is None:
            self.expect_marker(re.compile(r"HARNESS-SSH-READY"), timeout=self.profile.timeouts.boot, this_domain=True)
            self._ssh = SshSession(self.ssh_port, self.client_key, self.backend.host_key(self),
                                   self.profile.timeouts.ssh, username=self.backend.ssh_user)
        return self._ssh

    def transport(self, timeout: float | None = None) -> SshTransport:
        """Commands and SFTP over SSH; a crash during one raises CrashDuringCommand with its report."""
        return SshTransport(self.ssh(), timeout=timeout or self.profile.timeouts.ssh,
                            crash_probe=self.crash_probe(), artifacts=self.artifacts)

    def guest_agent(self, timeout: float = 10.0) -> GuestAgent:
        """The QEMU guest agent of the running domain (wait_connected() before the first command)."""
        if self.dom is None:
            raise HarnessError(f"{self.name} is not running: boot() it first")
        return GuestAgent(self.dom, timeout=timeout, crash_probe=self.crash_probe())

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = None) -> CommandResult:
        """One command over SSH; a crash while it runs raises CrashDuringCommand with the report."""
        return self.transport().run(command, stdin=stdin, timeout=timeout)

    def put_content_online(self, name: str, data: bytes, bad_update: bool = False) -> None:
        """Deliver a content update to the running guest, as the update agent would."""
        self._keep_content_copies({name: data}, bad_update)
        self.backend.put_content_online(self, name, data)

    def reload_content(self) -> None:
        """Ask the running sensor to re-read its content; judge from here on."""
        with self.cond:
            self.monitor.start_window(self.now())
        self.ssh()
        self.backend.reload_content(self)
        self._drop_ssh()

    def _drop_ssh(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    # ------------------------------------------------------------ teardown

    def destroy(self) -> None:
        """Stop the domain (console closed first); the data disk stays for the next boot."""
        dom = self._stop_watching()
        if dom is not None:
            self._destroy_domain(dom)

    def _stop_watching(self) -> libvirt.virDomain | None:
        """Close SSH, the console readers and the event recorder; hand back the running domain."""
        self._drop_ssh()
        with self.cond:
            self.monitor.expected_stop = True
        if self.console is not None:
            self.console.stop()
            self.console = None
        for reader in self.marker_readers:
            reader.stop()
        self.marker_readers = []
        if self.events is not None:
            self.events.record("harness:destroy", {})
            self.events.close()
            self.events = None
        dom, self.dom = self.dom, None
        self.mode = "off"
        return dom

    def _destroy_domain(self, dom: libvirt.virDomain) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            # Gone already, or our connection died with a restarted libvirtd while QEMU runs on.
            if not destroy_by_name(self.profile.uri, self.name):
                self.progress(f"{self.name}: libvirt unreachable; harness clean removes the domain later")

    def close(self, keep: bool = False, background: bool = False) -> Future[None]:
        """Destroy the domain, keep libvirt's domain log and remove the per-test disks (unless
        `keep`). With `background`, only the watching stops now and the rest runs in a background
        worker (teardown.py), so the next machine need not wait for QEMU to exit; the returned
        future (also `self.closed`) is done when all of it is."""
        with self.cond:
            self._closing = True  # a boot() still in createXML destroys its own domain
        dom = self._stop_watching()
        conn, self.conn = self.conn, None
        self.closed = teardown.submit(lambda: self._finish_close(dom, conn, keep))
        if not background:
            self.closed.result(timeout=TEARDOWN_TIMEOUT_S)
        return self.closed

    def _finish_close(self, dom: libvirt.virDomain | None, conn: libvirt.virConnect | None, keep: bool) -> None:
        if dom is not None:
            self._destroy_domain(dom)
        if conn is not None:
            try:
                conn.unregisterCloseCallback()
                conn.close()
            except libvirt.libvirtError:
                pass
        # libvirt reuses the log file for the next domain of the same name: keep this one's.
        keep_domain_log(self.profile.uri, self.name, self.artifacts / "domain.log")
        if not keep:
            for disk in self.backend.disks(self):
                disk.unlink(missing_ok=True)

    def serial_tail(self, chars: int = 3000) -> str:
        return self.buffer.tail(chars)

