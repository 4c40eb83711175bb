"""The Linux reference guest family: its console markers and crash parser."""

from __future__ import annotations

import re
from collections.abc import Callable

from ..crash.linux import LinuxConsoleParser
from ..crash.report import CrashReport
from . import ConsoleMarkers, CrashParser

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
    markers = MARKERS

    def __init__(self, on_report: Callable[[CrashReport], None] | None = None) -> None:
        self.on_report = on_report
        self.parsers: list[LinuxConsoleParser] = []

    def crash_parser(self) -> CrashParser:
        parser = LinuxConsoleParser(on_report=self.on_report)
        if self.on_report is not None:
            self.parsers.append(parser)  # kept to be flushed at the end of a saved log
        return parser
