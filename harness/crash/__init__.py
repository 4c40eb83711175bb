"""Crash reports from guest console text (Linux Oops/panic now; Windows bugchecks later)."""

from .linux import LinuxConsoleParser, is_crash_start, parse_reports
from .report import CrashReport, normalize_title

__all__ = ["CrashReport", "LinuxConsoleParser", "is_crash_start", "normalize_title", "parse_reports"]
