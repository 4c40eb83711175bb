"""What a guest family adds to the generic Machine: its disks, its domain XML, its
consoles and how content reaches it.

`Machine` (machine.py) owns the libvirt lifecycle, the event recorder, the
console readers, the monitor and the verdicts; it knows no guest. A backend
knows one family: the Linux reference guest (harness/guest/linux_backend.py)
or Windows (harness/windows/backend.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import paramiko

from ..families import Family

if TYPE_CHECKING:
    from .machine import Machine


@dataclass(frozen=True)
class ConsolePort:
    """A serial port the machine reads live. `device` is libvirt's alias (None: the first
    serial port). `markers_only`: only the harness's own `HARNESS-` lines of this port go to
    the monitor (COM2 of a Windows guest also mirrors the firmware's screen)."""
    device: str | None
    log: Path
    markers_only: bool = False


class GuestBackend(Protocol):
    family: Family
    ssh_user: str  # the account the harness's SSH key logs in to

    def login_key(self) -> paramiko.PKey | None:
        """The client key the guest accepts, or None: a new key per machine, placed on its disk."""
        ...

    def consoles(self, machine: Machine) -> tuple[ConsolePort, ...]:
        """The ports read live; the first carries boot banners and crash text."""
        ...

    def prepare_first_boot(self, machine: Machine) -> None:
        """Create the machine's own disks (with the content placed offline)."""
        ...

    def domain_xml(self, machine: Machine, mode: str) -> str:
        """The domain for a boot in `mode`: normal, safe or recovery."""
        ...

    def crash_lines(self, machine: Machine) -> list[str]:
        """Crash text the console does not carry, read at a CRASHED event (Windows: the domain
        log's `panic hyper-v` line with the STOP code's parameters); usually none."""
        ...

    def host_key(self, machine: Machine) -> Path:
        """The guest's SSH host public key, pinned for every session."""
        ...

    def put_content_online(self, machine: Machine, name: str, data: bytes) -> None:
        """Write a content file into the running guest's content directory, atomically."""
        ...

    def reload_content(self, machine: Machine) -> None:
        """Ask the running sensor to re-read its content directory (a crash may follow)."""
        ...

    def content_listing(self, machine: Machine) -> dict[str, bytes]:
        """The content directory of the machine's disk, read offline (the machine is off)."""
        ...

    def sample_recovery_script(self, path: str) -> Path:
        """The shipped sample recovery script for `path`, used when the profile names none."""
        ...

    def prepare_recovery(self, machine: Machine, path: str, workdir: Path, script: Path,
                         bad_update: list[tuple[str, str]]) -> None:
        """Make what the next boot in recovery `path` needs (a medium, a boot setting)."""
        ...

    def finish_recovery(self, machine: Machine, path: str) -> None:
        """Undo prepare_recovery() once the recovery boot is over."""
        ...

    def disks(self, machine: Machine) -> tuple[Path, ...]:
        """The machine's own disk files (removed at close unless kept)."""
        ...
