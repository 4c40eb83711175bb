"""Commands and files over an SSH session, for Linux and Windows guests alike.

    shell = vm.transport()  # SshTransport(session, crash_probe=vm.crash_probe())
    shell.put(data, "/data/content/C-00000291-00000000-00000031.sys")   # SFTP, temp name + rename
    result = shell.run("cat /proc/version", timeout=10)                  # rc, stdout, stderr
    shell.get("/data/content/C-00000291-00000000-00000031.sys")          # SFTP, bytes

Every command and every SFTP operation has a timeout; SSH keepalives run on the
session, so a peer that vanished is noticed.  A guest that crashes takes its SSH
session with it (the channel stalls or the connection drops): when that happens and
the caller's crash probe shows a crash on the machine's console, the error raised is
CrashDuringCommand, carrying the crash report (its title: "BUG: unable to handle page
fault in chf_match_criterion", or a Windows bugcheck), never a bare SSH error.  While
a command runs the probe is also asked (without waiting) at every slice, so a crash
mid-command is reported within a slice instead of at the command's timeout.

PowerShell command lines for Windows guests are made by harness/windows/powershell.py;
the guest agent (harness/vm/guest_agent.py) is the second channel.
"""

from __future__ import annotations

import posixpath
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import paramiko

from ..artifacts import write_atomic
from ..crash.report import CrashReport
from ..errors import CrashDetected, InfraError
from .ssh import CommandFailed, CommandResult


# A crash probe: wait up to `seconds` for the machine to show a crash that began after
# the probe was made; return its report, or None when none showed in that time.
CrashProbe = Callable[[float], "CrashReport | None"]

DEFAULT_CRASH_WAIT_S = 5.0  # how long a dead session waits for the console's crash report
SLICE_S = 0.25  # a running command is checked (exit status, output, crash probe) this often
KEEPALIVE_S = 5


class CrashDuringCommand(CrashDetected):
    """The guest crashed while a command or transfer ran: the session died with it.
    `report` is the crash as the console showed it; `command` what was running."""

    def __init__(self, command: str, report: CrashReport, how: str, artifacts: Path | None = None) -> None:
        self.command = command
        self.report = report
        super().__init__(f"the guest crashed during {command!r} ({how}): {report.title}", artifacts)


class SessionLost(InfraError):
    """The SSH session died and no crash showed: the network, the SSH server or QEMU failed."""


class CommandTimeout(CommandFailed):
    """A command did not end within its timeout, and no crash showed."""


class _HasClient(Protocol):
    client: paramiko.SSHClient


def event_only_report() -> CrashReport:
    """A crash libvirt reported (pvpanic / Hyper-V crash MSRs) with no console text."""
    return CrashReport(title="guest panicked (hypervisor crash event, no console report)", kind="panic",
                       text="", first_line=0, last_line=0, panic=True)


class SshTransport:
    """Commands (with exit code, stdout, stderr, a timeout each) and SFTP over one session."""

    def __init__(self, session: paramiko.SSHClient | _HasClient, timeout: float = 60.0,
                 crash_probe: CrashProbe | None = None, keepalive_s: int = KEEPALIVE_S,
                 crash_wait_s: float = DEFAULT_CRASH_WAIT_S, artifacts: Path | None = None) -> None:
        """session: a connected paramiko SSHClient, or an SshSession (harness/vm/ssh.py, host key
        pinned).  timeout: default seconds per command / SFTP operation.  crash_probe: see
        CrashProbe; without one a dead session is a SessionLost or CommandTimeout error."""
        self.client: paramiko.SSHClient = session if isinstance(session, paramiko.SSHClient) else session.client
        self.timeout = timeout
        self.crash_probe = crash_probe
        self.crash_wait_s = crash_wait_s
        self.artifacts = artifacts
        self._sftp: paramiko.SFTPClient | None = None
        self._transport().set_keepalive(keepalive_s)

    # ---------------------------------------------------------------- plumbing

    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost("open a channel", "the SSH connection is closed")
        return transport

    def _crash(self, what: str, how: str, wait: float | None = None) -> CrashDuringCommand | None:
        if self.crash_probe is None:
            return None
        report = self.crash_probe(self.crash_wait_s if wait is None else wait)
        return None if report is None else CrashDuringCommand(what, report, how, self.artifacts)

    def _lost(self, what: str, how: str) -> InfraError:
        return self._crash(what, how) or SessionLost(f"SSH session lost during {what!r}: {how}"
                                                     + (f" (artifacts: {self.artifacts})" if self.artifacts else ""))

    # ---------------------------------------------------------------- commands

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = None,
            check: bool = False) -> CommandResult:
        """Run `command` (the server's shell parses it: sh on Linux, cmd.exe on Windows OpenSSH),
        feed `stdin`, collect stdout and stderr; at most `timeout` seconds.  check=True raises
        CommandFailed on a non-zero exit code."""
        limit = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + limit
        transport = self._transport()
        try:
            chan = transport.open_session(timeout=limit)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(command, f"cannot open a channel: {exc}") from None
        out, err = bytearray(), bytearray()
        try:
            chan.settimeout(limit)
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                _drain(chan, out, err)
                if chan.exit_status_ready():
                    _drain(chan, out, err)  # data precedes the exit status on the wire
                    break
                if not transport.is_active() or chan.closed:
                    raise self._lost(command, "the connection closed before the command ended")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._crash(command, f"no answer within {limit:.0f} s") or CommandTimeout(
                        f"ssh command timed out after {limit:.0f} s: {command}")
                if self.crash_probe is not None and (crash := self._crash(command, "the session stalled", 0.0)):
                    raise crash
                chan.status_event.wait(min(SLICE_S, left))
            rc = chan.recv_exit_status()
        except (socket.timeout, paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(command, f"{type(exc).__name__}: {exc}") from None
        finally:
            chan.close()
        result = CommandResult(command, rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and rc != 0:
            raise CommandFailed(f"command failed (rc {rc}): {command}: {result.stderr.strip()[-500:]}")
        return result

    # -------------------------------------------------------------------- SFTP

    def sftp(self) -> paramiko.SFTPClient:
        """The session's SFTP client (opened once; each operation bounded by the timeout)."""
        if self._sftp is None:
            transport = self._transport()
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost("open SFTP", f"the server has no SFTP subsystem or refused it: {exc}") from None
            assert self._sftp is not None
            self._sftp.get_channel().settimeout(self.timeout)
        return self._sftp

    def _sftp_call(self, what: str, action: Callable[[paramiko.SFTPClient], object], timeout: float | None):
        sftp = self.sftp()
        sftp.get_channel().settimeout(timeout if timeout is not None else self.timeout)
        try:
            return action(sftp)
        except socket.timeout:
            self._drop_sftp()
            raise self._crash(what, "SFTP stalled") or CommandTimeout(
                f"SFTP {what} timed out after {timeout or self.timeout:.0f} s") from None
        except (paramiko.SSHException, EOFError) as exc:
            self._drop_sftp()
            raise self._lost(what, f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:  # an SFTP status (no such file, permission denied), the session lives
            if not self.client.get_transport() or not self.client.get_transport().is_active():
                self._drop_sftp()
                raise self._lost(what, f"{type(exc).__name__}: {exc}") from None
            raise InfraError(f"SFTP {what} failed: {exc}") from None

    def _drop_sftp(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001 - closing a dead channel may fail in any way
                pass
            self._sftp = None

    def put(self, data: bytes, remote: str, timeout: float | None = None, mode: int | None = None) -> None:
        """Write `data` to `remote` (a path the SFTP server understands: /data/x on Linux,
        /C:/Windows/... on Windows OpenSSH, see harness.windows.powershell.sftp_path) so that a
        half-written file never appears under its final name: a hidden temp name in the same
        directory first, then renamed over the target (posix-rename where the server has it)."""
        directory, name = posixpath.split(remote)
        if not name:
            raise InfraError(f"SFTP put: {remote!r} names a directory, not a file")
        temp = posixpath.join(directory, f".{name}.part-{secrets.token_hex(4)}")

        def action(sftp: paramiko.SFTPClient) -> None:
            try:
                with sftp.open(temp, "wb") as handle:
                    handle.set_pipelined(True)
                    handle.write(data)
                if mode is not None:
                    sftp.chmod(temp, mode)
                if sftp.stat(temp).st_size != len(data):
                    raise OSError(f"{temp}: size after writing is not {len(data)}")
                _rename_over(sftp, temp, remote)
            except BaseException:
                try:
                    sftp.remove(temp)
                except (OSError, paramiko.SSHException, EOFError):
                    pass
                raise

        self._sftp_call(f"put {remote}", action, timeout)

    def get(self, remote: str, timeout: float | None = None) -> bytes:
        """The contents of `remote`, over SFTP."""

        def action(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(remote, "rb") as handle:
                handle.prefetch()
                return handle.read()

        return self._sftp_call(f"get {remote}", action, timeout)  # type: ignore[return-value]

    def get_to(self, remote: str, local: Path, timeout: float | None = None) -> Path:
        """Copy `remote` to the local file `local` (its directory made; written atomically)."""
        data = self.get(remote, timeout)
        local.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(local, data)
        return local

    def listdir(self, remote: str, timeout: float | None = None) -> list[str]:
        return sorted(self._sftp_call(f"listdir {remote}", lambda s: s.listdir(remote), timeout))  # type: ignore[arg-type]

    def close(self) -> None:
        self._drop_sftp()


def sftp_put_atomic(session: paramiko.SSHClient | _HasClient, remote: str, data: bytes,
                    timeout: float = 60.0, crash_probe: CrashProbe | None = None) -> None:
    """One SFTP put (temporary name, then renamed over `remote`) on an open session."""
    shell = SshTransport(session, timeout=timeout, crash_probe=crash_probe)
    try:
        shell.put(data, remote)
    finally:
        shell.close()


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(65536)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(65536)


def _rename_over(sftp: paramiko.SFTPClient, temp: str, target: str) -> None:
    """Rename `temp` over `target`.  posix-rename@openssh.com replaces atomically; a server
    without it (plain SFTP v3 rename fails when the target exists) gets remove + rename:
    the target is then briefly absent, never half-written."""
    try:
        sftp.posix_rename(temp, target)
        return
    except OSError as exc:
        if "unsupported" not in str(exc).lower() and "not supported" not in str(exc).lower():
            raise
    try:
        sftp.remove(target)
    except FileNotFoundError:
        pass
    sftp.rename(temp, target)
