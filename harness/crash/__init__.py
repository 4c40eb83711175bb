"""Crash reports from guest console text: Linux kernel reports (`linux/`) and Windows bugchecks (`windows/`).

Every report is a `CrashReport` (`report.py`): a title in the style of
syzkaller's pkg/report, the guilty function and module, the report's kind,
whether it is fatal (a crash) or a finding the machine survives, and whether
its text is corrupted (cut or interleaved) and why.
"""

from .linux import LinuxConsoleParser, is_crash_start, parse_all, parse_reports
from .report import CrashReport, normalize_title

__all__ = ["CrashReport", "LinuxConsoleParser", "is_crash_start", "normalize_title", "parse_all", "parse_reports"]
