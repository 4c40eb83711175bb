"""What a guest family adds to the generic Machine: its disks, its domain XML, its
consoles and how content reaches it.

`Machine` (machine.py) owns the libvirt lifecycle, the event recorder, the
console readers, the monitor and the verdicts; it knows no guest. A backend
knows one family: the Linux reference guest (harness/guest/linux_backend.py)
or Windows (harness/windows/backend.py). A family registers itself by name
(registry.py); the machine asks the registry for the family its profile names.

Backends see a machine through `MachineView`: the few things of it they use, so
that this module (and every family) never imports the Machine class.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import paramiko

from ..config import Profile
from ..families import Family
from .ssh import CommandResult, SshSession
from .transport import SshTransport

RecoveryPath = Literal["safe-mode", "recovery-env"]
RECOVERY_PATHS: tuple[RecoveryPath, ...] = ("safe-mode", "recovery-env")


class SpecView(Protocol):
    run_id: str
    test_id: str
    content: dict[str, bytes]


class MachineView(Protocol):
    """What a backend may use of the machine it serves."""
    name: str
    profile: Profile
    spec: SpecView
    artifacts: Path
    serial_log: Path
    sensor: str
    network: bool
    ssh_port: int | None
    client_key: paramiko.PKey | None
    domain_type: str
    owner_pid: int

    def ssh(self) -> SshSession: ...
    def run(self, command: str, stdin: bytes = b"", timeout: float | None = None) -> CommandResult: ...
    def transport(self, timeout: float | None = None) -> SshTransport: ...
    def expect_marker(self, pattern: Any, timeout: float = 30.0) -> Any: ...


@dataclass(frozen=True)
class ConsolePort:
    """A serial port the machine reads live. `device` is libvirt's alias (None: the first
    serial port). `markers_only`: only the harness's own `HARNESS-` lines of this port and the
    lines the family's markers know (the driver's own word, e.g. a file it rejected) go to the
    monitor (COM2 of a Windows guest also mirrors the firmware's screen)."""
    device: str | None
    log: Path
    markers_only: bool = False


class GuestBackend(Protocol):
    family: Family
    ssh_user: str  # the account the harness's SSH key logs in to

    def login_key(self) -> paramiko.PKey | None:
        """The client key the guest accepts, or None: a new key per machine, placed on its disk."""
        ...

    def consoles(self, machine: MachineView) -> tuple[ConsolePort, ...]:
        """The ports read live; the first carries boot banners and crash text."""
        ...

    def prepare_first_boot(self, machine: MachineView) -> None:
        """Create the machine's own disks (with the content placed offline)."""
        ...

    def domain_xml(self, machine: MachineView, mode: str) -> str:
        """The domain for a boot in `mode`: normal, safe or recovery."""
        ...

    def crash_lines(self, machine: MachineView) -> list[str]:
        """Crash text the console does not carry, read at a CRASHED event (Windows: the domain
        log's `panic hyper-v` line with the STOP code's parameters); usually none."""
        ...

    def host_key(self, machine: MachineView) -> Path:
        """The guest's SSH host public key, pinned for every session."""
        ...

    def put_content_online(self, machine: MachineView, name: str, data: bytes) -> None:
        """Write a content file into the running guest's content directory, atomically."""
        ...

    def reload_content(self, machine: MachineView) -> None:
        """Ask the running sensor to re-read its content directory (a crash may follow)."""
        ...

    def content_listing(self, machine: MachineView) -> dict[str, bytes]:
        """The content directory of the machine's disk, read offline (the machine is off)."""
        ...

    def sample_recovery_script(self, path: str) -> Path:
        """The shipped sample recovery script for `path`, used when the profile names none."""
        ...

    def prepare_recovery(self, machine: MachineView, path: str, workdir: Path, script: Path,
                         bad_update: list[tuple[str, str]]) -> None:
        """Make what the next boot in recovery `path` needs (a medium, a boot setting)."""
        ...

    def finish_recovery(self, machine: MachineView, path: str) -> None:
        """Undo prepare_recovery() once the recovery boot is over."""
        ...

    def disks(self, machine: MachineView) -> tuple[Path, ...]:
        """The machine's own disk files (removed at close unless kept)."""
        ...


Progress = Callable[[str], None]


class SnapshotPoint(Protocol):
    """Optional, as a family plugin's `snapshot_point` attribute: a point of the family's boot,
    before its driver reads any content, where a machine can be saved once and restored for each
    content file (harness/vm/snapshot.py, harness/fastpath/, docs/fastpath.md). A family without
    one (Windows) has no snapshot fast path."""
    marker: re.Pattern[str]  # the console line the guest prints when it waits at the point

    def key_parts(self, guest: Any, profile: Profile, sensor: str) -> dict[str, Any]:
        """What of the family's guest and driver the saved memory depends on (the snapshot key)."""
        ...

    def arm(self, backend: GuestBackend) -> None:
        """Make the boots of `backend`'s machine stop at the point (a boot switch)."""
        ...

    def make_placeholder(self, machine: MachineView) -> None:
        """Turn the machine's content disk (made by prepare_first_boot) into the stand-in the
        guest waits on; the restore names each file's own disk in its place."""
        ...

    def problem(self, console: str) -> str | None:
        """What went wrong with a restore, read from the console text (None: nothing)."""
        ...


class GuestFamilyPlugin(Protocol):
    """A guest family as the harness plugs it in (registry.py): what its machines boot, and
    a backend for each machine."""
    name: str

    def prepare(self, profile: Profile, sensor: str | None, progress: Progress) -> tuple[Any, str]:
        """What the profile's machines boot (a built guest, a golden image) and the sensor
        build they run; built or checked once, cached."""
        ...

    def backend(self, guest: Any, profile: Profile) -> GuestBackend:
        """A backend for one machine booting `guest`."""
        ...

    def shared_files(self, guest: Any) -> list[Path]:
        """Files of `guest` a remote libvirt host must see at the same paths."""
        ...
