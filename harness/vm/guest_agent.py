"""The QEMU guest agent as a second channel into a guest, through libvirt-python.

    agent = GuestAgent(dom)            # a running libvirt domain with an org.qemu.guest_agent.0 channel
    agent.wait_connected(timeout=60)   # libvirt's agent-lifecycle event, not a retry loop
    result = agent.exec("/bin/cat", ["/proc/version"], timeout=10)
    agent.write_file("/data/content/C-00000291-00000000-00000031.sys", data)

The same calls work with qemu-ga on Linux and with the QEMU-GA service that the
virtio-win guest tools install on Windows (paths are the guest's own: C:\\... there).
What the agent protocol offers is documented at
https://www.qemu.org/docs/master/interop/qemu-ga-ref.html; libvirt sends each command
with `virDomainQemuAgentCommand` (`libvirt_qemu.qemuAgentCommand`), after its own
guest-sync handshake.

Every call has a timeout; every error names the agent command that failed (and the
guest path or program where there is one).  An agent that stops answering because the
guest crashed is reported as the crash when a crash probe is given (see
harness/vm/transport.py: CrashProbe; Machine.crash_probe()).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import libvirt
import libvirt_qemu

from ..errors import InfraError
from .transport import CrashProbe, CrashDuringCommand, DEFAULT_CRASH_WAIT_S

AGENT_CHANNEL = "org.qemu.guest_agent.0"
WRITE_CHUNK = 1 << 20  # bytes per guest-file-write (1.4 MiB of base64 in one JSON message)
READ_CHUNK = 1 << 20  # bytes asked per guest-file-read (the agent allows up to 48 MiB)
# guest-exec-status polling: the agent sends no event when a process ends, so the host
# asks again, first quickly (most commands finish in milliseconds), then at most every
# POLL_MAX_S, never past the command's deadline.
POLL_FIRST_S = 0.02
POLL_MAX_S = 0.5


class GuestAgentError(InfraError):
    """The agent refused a command, did not answer in time, or is not connected."""


class GuestExecTimeout(GuestAgentError):
    """A guest-exec'd process did not end by its deadline (it may still run in the guest:
    the agent protocol has no way to kill it)."""


@dataclass(frozen=True)
class ExecResult:
    """What a program run with guest-exec did."""

    command: list[str]
    rc: int | None  # exit code; None when a signal ended it (Linux)
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool  # the agent cut the captured output (16 MiB per stream)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class GuestAgent:
    def __init__(self, dom: libvirt.virDomain, timeout: float = 10.0,
                 crash_probe: CrashProbe | None = None,
                 crash_wait_s: float = DEFAULT_CRASH_WAIT_S) -> None:
        """dom: a running domain whose XML has the org.qemu.guest_agent.0 channel.
        timeout: seconds each agent command may take (exec: each poll); crash_probe:
        asked when the agent fails, so that a guest crash is reported as the crash."""
        self.dom = dom
        self.timeout = timeout
        self.crash_probe = crash_probe
        self.crash_wait_s = crash_wait_s

    # ------------------------------------------------------------- raw commands

    def command(self, name: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = None, what: str = "") -> Any:
        """Send one agent command; its "return" value.  `what` names the object in errors."""
        message: dict[str, Any] = {"execute": name}
        if arguments is not None:
            message["arguments"] = arguments
        seconds = max(1, int(round(timeout if timeout is not None else self.timeout)))
        label = f"{name} {what}".strip()
        try:
            reply = libvirt_qemu.qemuAgentCommand(self.dom, json.dumps(message), seconds, 0)
        except libvirt.libvirtError as exc:
            self._crash_check(label)
            raise GuestAgentError(f"guest agent command {label} failed on {self._name()}: "
                                  f"{exc.get_error_message()}{self._hint(exc)}") from None
        try:
            decoded = json.loads(reply)
        except ValueError:
            raise GuestAgentError(f"guest agent command {label}: reply is not JSON: {reply[:200]!r}") from None
        if "error" in decoded:
            err = decoded["error"]
            raise GuestAgentError(f"guest agent command {label} failed: {err.get('class', '?')}: "
                                  f"{err.get('desc', err)}")
        return decoded.get("return")

    def _name(self) -> str:
        try:
            return self.dom.name()
        except libvirt.libvirtError:
            return "the domain"

    @staticmethod
    def _hint(exc: libvirt.libvirtError) -> str:
        code = exc.get_error_code()
        if code == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
            return (" (is qemu-ga running in the guest? Linux reference guest: HARNESS-AGENT-STARTED on "
                    "the console; Windows: the QEMU-GA service of the virtio-win guest tools)")
        if code == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED or "channel" in (exc.get_error_message() or ""):
            return f" (the domain needs <channel type='unix'><target type='virtio' name='{AGENT_CHANNEL}'/>)"
        return ""

    def _crash_check(self, label: str) -> None:
        if self.crash_probe is None:
            return
        report = self.crash_probe(self.crash_wait_s)
        if report is not None:
            raise CrashDuringCommand(f"guest agent {label}", report, "the guest agent stopped answering")

    # --------------------------------------------------------------- liveness

    def connected(self) -> bool:
        """libvirt's view: the guest has the agent's port open (the channel state)."""
        try:
            xml = self.dom.XMLDesc(0)
        except libvirt.libvirtError as exc:
            raise GuestAgentError(f"cannot read the domain XML of {self._name()}: {exc.get_error_message()}") from None
        for target in ET.fromstring(xml).iterfind("./devices/channel/target"):
            if target.get("name") == AGENT_CHANNEL:
                return target.get("state") == "connected"
        raise GuestAgentError(f"{self._name()} has no guest agent channel: add <channel type='unix'><target "
                              f"type='virtio' name='{AGENT_CHANNEL}'/></channel> to its domain XML")

    def wait_connected(self, timeout: float) -> float:
        """Block until the guest opens the agent port (libvirt's agent-lifecycle event; the
        connection needs the event loop of harness.vm.connection) and the agent answers
        guest-ping.  Returns the seconds waited."""
        start = time.monotonic()
        conn = self.dom.connect()
        opened = threading.Event()

        def on_lifecycle(_conn: Any, _dom: Any, state: int, _reason: int, _opaque: Any) -> None:
            if state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED:
                opened.set()

        cb = conn.domainEventRegisterAny(self.dom, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                         on_lifecycle, None)
        try:
            if not self.connected():  # checked after registering: no connection is missed
                if not opened.wait(timeout):
                    self._crash_check("wait-connected")
                    raise GuestAgentError(f"the guest agent of {self._name()} did not connect within "
                                          f"{timeout:.0f} s (no qemu-ga on the {AGENT_CHANNEL} port)")
        finally:
            try:
                conn.domainEventDeregisterAny(cb)
            except libvirt.libvirtError:
                pass
        left = max(1.0, timeout - (time.monotonic() - start))
        self.ping(timeout=left)
        return time.monotonic() - start

    def ping(self, timeout: float | None = None) -> None:
        self.command("guest-ping", timeout=timeout)

    def sync(self, timeout: float | None = None) -> None:
        """guest-sync with a fresh id: the agent echoes it (stale replies are flushed)."""
        token = secrets.randbelow(1 << 31)
        answer = self.command("guest-sync", {"id": token}, timeout=timeout)
        if answer != token:
            raise GuestAgentError(f"guest agent command guest-sync: sent id {token}, got {answer!r}")

    def os_info(self) -> dict[str, Any]:
        """guest-get-osinfo: "id" is "mswindows" on Windows, the os-release ID (or absent) on Linux."""
        return dict(self.command("guest-get-osinfo") or {})

    def is_windows(self) -> bool:
        return self.os_info().get("id") == "mswindows"

    # ------------------------------------------------------------------- exec

    def exec(self, path: str, args: Sequence[str] = (), *, stdin: bytes = b"",
             env: Sequence[str] | None = None, timeout: float | None = None) -> ExecResult:
        """Run `path` with `args` in the guest (no shell), capture stdout/stderr, wait at most
        `timeout` seconds for it to end.  Raises GuestExecTimeout past the deadline."""
        limit = timeout if timeout is not None else self.timeout
        argv = [path, *args]
        arguments: dict[str, Any] = {"path": path, "arg": list(args), "capture-output": True}
        if env is not None:
            arguments["env"] = list(env)
        if stdin:
            arguments["input-data"] = base64.b64encode(stdin).decode()
        started = self.command("guest-exec", arguments, what=path)
        pid = int(started["pid"])
        deadline = time.monotonic() + limit
        interval = POLL_FIRST_S
        while True:
            # No completion event exists in the agent protocol: poll guest-exec-status, at a
            # bounded interval, until the process has exited or the deadline passes.
            status = self.command("guest-exec-status", {"pid": pid}, what=f"{path} (pid {pid})",
                                  timeout=min(self.timeout, max(1.0, deadline - time.monotonic() + 1)))
            if status.get("exited"):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                self._crash_check(f"guest-exec {path}")
                raise GuestExecTimeout(f"guest-exec {' '.join(argv)} (pid {pid}) did not end within "
                                       f"{limit:.0f} s; it may still run in the guest on {self._name()}")
            time.sleep(min(interval, left))
            interval = min(POLL_MAX_S, interval * 2)
        return ExecResult(
            command=argv,
            rc=status.get("exitcode"),
            signal=status.get("signal"),
            stdout=base64.b64decode(status.get("out-data", "")),
            stderr=base64.b64decode(status.get("err-data", "")),
            truncated=bool(status.get("out-truncated") or status.get("err-truncated")))

    # ------------------------------------------------------------------ files

    def _open(self, path: str, mode: str) -> int:
        return int(self.command("guest-file-open", {"path": path, "mode": mode}, what=path))

    def _close(self, handle: int, path: str) -> None:
        self.command("guest-file-close", {"handle": handle}, what=path)

    def write_file(self, path: str, data: bytes, chunk: int = WRITE_CHUNK) -> None:
        """Create or truncate `path` in the guest and write `data` (base64 chunks of `chunk`
        bytes); the handle is closed (and the file flushed by the agent) before returning."""
        handle = self._open(path, "wb")
        try:
            for offset in range(0, len(data), chunk):
                piece = data[offset:offset + chunk]
                written = self.command("guest-file-write", {
                    "handle": handle, "buf-b64": base64.b64encode(piece).decode()}, what=path)
                if int(written.get("count", -1)) != len(piece):
                    raise GuestAgentError(f"guest agent command guest-file-write {path}: wrote "
                                          f"{written.get('count')} of {len(piece)} bytes at offset {offset}")
            self.command("guest-file-flush", {"handle": handle}, what=path)
        finally:
            self._close(handle, path)

    def read_file(self, path: str, max_bytes: int = 64 << 20, chunk: int = READ_CHUNK) -> bytes:
        """The whole of `path` from the guest (at most `max_bytes`, else GuestAgentError)."""
        handle = self._open(path, "rb")
        out = bytearray()
        try:
            while True:
                got = self.command("guest-file-read", {"handle": handle, "count": chunk}, what=path)
                out += base64.b64decode(got.get("buf-b64", ""))
                if len(out) > max_bytes:
                    raise GuestAgentError(f"guest agent command guest-file-read {path}: more than "
                                          f"{max_bytes} bytes; pass a larger max_bytes")
                if got.get("eof") or not got.get("count"):
                    break
        finally:
            self._close(handle, path)
        return bytes(out)

    def put_file(self, path: str, data: bytes, timeout: float | None = None) -> None:
        """Deliver `data` to `path` so that the file never shows half-written under its name:
        write `<path>.part`, then rename it over `path` with the guest's own tool (`mv -f`
        on Linux; cmd.exe's built-in `move /y` on Windows, which needs no PowerShell)."""
        part = f"{path}.part"
        self.write_file(part, data)
        if self.is_windows():
            argv = ["cmd.exe", "/d", "/c", "move", "/y", part, path]
        else:
            argv = ["mv", "-f", part, path]
        result = self.exec(argv[0], argv[1:], timeout=timeout)
        if result.rc != 0:
            raise GuestAgentError(f"renaming {part} to {path} in the guest failed (rc {result.rc}): "
                                  f"{result.stderr.decode(errors='replace').strip()}")
