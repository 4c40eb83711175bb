"""Guest families: what a family's console says at each step of a boot.

The monitor knows no guest; a family tells it which lines start a boot, mark
the driver loaded or skipped, reject a content file, complete the boot, and
which parser turns crash text into a report. A family whose OS may crash before
it prints anything (Windows) also names the firmware's line of every boot and
asks for libvirt's reset and crash events to end boots (`firmware_boot`,
`resets_end_boots`, `untold_crash`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..crash.report import CrashReport


class CrashParser(Protocol):
    def is_crash_start(self, line: str) -> bool: ...
    def feed_line(self, line: str, lineno: int) -> None: ...
    def reports(self) -> list[CrashReport]: ...
    def findings(self) -> list[CrashReport]: ...  # non-fatal reports completed since the last call
    def settle(self) -> None: ...  # finish a finding that only waits for a panic that may follow
    def flush(self) -> list[CrashReport]: ...
    @property
    def panicked(self) -> bool: ...


@dataclass(frozen=True)
class ConsoleMarkers:
    boot_start: re.Pattern[str]
    sensor_loaded: re.Pattern[str]
    sensor_skipped: re.Pattern[str]
    boot_complete: re.Pattern[str]
    file_loaded: re.Pattern[str]  # group "name"
    file_rejected: re.Pattern[str]  # groups "name", "reason"
    ssh_ready: re.Pattern[str]
    boot_error: re.Pattern[str]
    crash_end: re.Pattern[str]  # the last line of a crash report, when the guest prints one
    recovery_done: re.Pattern[str]  # groups "path", "rc": the recovery script finished
    script_output: re.Pattern[str]  # a line a user's script printed, relayed by the guest
    # For a guest whose OS may crash before it prints anything (Windows: a boot-start driver
    # bugchecks before SAC starts, and client editions have no SAC), boots are also counted
    # from what every boot produces. Left at None/False (Linux), only `boot_start` opens a boot.
    firmware_boot: re.Pattern[str] | None = None  # the firmware's line at every reset
    resets_end_boots: bool = False  # libvirt's REBOOT and CRASHED/PANICKED events end the boot
    # The report of a crash that no text described (the event name, the console line number)
    untold_crash: Callable[[str, int], CrashReport] | None = None

    def knows(self, line: str) -> bool:
        """A line that tells the driver's state (loaded, skipped, a file loaded or rejected, the
        boot complete or failed): what a port that also carries other text must pass on."""
        return any(p.search(line) for p in (self.sensor_loaded, self.sensor_skipped, self.file_loaded,
                                            self.file_rejected, self.boot_complete, self.boot_error))


class Family(Protocol):
    name: str
    markers: ConsoleMarkers

    def crash_parser(self) -> CrashParser: ...
