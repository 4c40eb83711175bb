"""The Linux reference guest family: its console markers and crash parser.

The markers of the guest's init are the harness's own; what the driver says is the
driver's: the sample sensor's lines by default, or a vendor driver's `ready` and
`rejected` lines from its profile (harness/driver.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ..crash.linux import LinuxConsoleParser
from ..crash.report import CrashReport
from ..driver import DriverSpec
from . import ConsoleMarkers, CrashParser

NEVER = re.compile(r"(?!)")  # a line no driver prints

MARKERS = ConsoleMarkers(
    # The kernel banner opens every boot; the init's marker follows it.
    boot_start=re.compile(r"Linux version \d"),
    sensor_loaded=re.compile(r"HARNESS-SENSOR-(?:LOADED|RELOADED) build=(?P<build>\w+)"),
    sensor_skipped=re.compile(r"HARNESS-SENSOR-SKIPPED"),
    boot_complete=re.compile(r"HARNESS-BOOT-COMPLETE"),
    file_loaded=re.compile(r"harness_sensor: (?P<name>\S+): loaded \("),
    file_rejected=re.compile(r"harness_sensor: (?P<name>\S+): rejected: (?P<reason>.*)$"),
    ssh_ready=re.compile(r"HARNESS-SSH-READY"),
    boot_error=re.compile(r"HARNESS-BOOT-ERROR (?P<reason>.*)$"),
    crash_end=re.compile(r"---\[ end Kernel panic|Rebooting in \d+ seconds"),
    script_output=re.compile(r"(?:^|\] )recovery: "),
    recovery_done=re.compile(r"HARNESS-RECOVERY-DONE path=(?P<path>\S+) rc=(?P<rc>-?\d+)"),
)


class LinuxFamily:
    """`on_report`, if given, is called with every report its parsers complete, fatal or not
    (`harness triage` lists them all); the monitor itself sees the fatal ones."""

    name = "linux"

    def __init__(self, on_report: Callable[[CrashReport], None] | None = None,
                 driver: DriverSpec | None = None) -> None:
        self.markers = driver_markers(driver) if driver else MARKERS
        self.on_report = on_report
        self.parsers: list[LinuxConsoleParser] = []

    def crash_parser(self) -> CrashParser:
        parser = LinuxConsoleParser(on_report=self.on_report)
        if self.on_report is not None:
            self.parsers.append(parser)  # kept to be flushed at the end of a saved log
        return parser


def driver_markers(driver: DriverSpec) -> ConsoleMarkers:
    """The reference guest's markers with a vendor driver's own words: `ready` is the driver
    up with its content, `rejected` (groups file, reason) a content file it refused. It
    names no file it loaded."""
    rejected = driver.rejected_re
    return dataclasses.replace(
        MARKERS, sensor_loaded=driver.ready_re, file_loaded=NEVER,
        # the monitor reads the file's name from the group `name`
        file_rejected=re.compile(rejected.pattern.replace("(?P<file>", "(?P<name>")) if rejected else NEVER)
