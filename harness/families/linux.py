"""The Linux reference guest family: its console markers and crash parser."""

from __future__ import annotations

import re

from ..crash.linux import LinuxConsoleParser
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
    name = "linux"
    markers = MARKERS

    def crash_parser(self) -> CrashParser:
        return LinuxConsoleParser()
