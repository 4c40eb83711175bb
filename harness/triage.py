"""Judge a saved serial log: the same monitor as a live run, fed line by line."""

from __future__ import annotations

from pathlib import Path

from .errors import InputFileError
from .families.linux import LinuxFamily
from .monitor.monitor import Monitor
from .monitor.verdict import Verdict

MAX_LOG_BYTES = 512 * 1024 * 1024


def read_log(path: Path) -> str:
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the serial log (serial.log)")
    if path.stat().st_size > MAX_LOG_BYTES:
        raise InputFileError(f"{path}: larger than {MAX_LOG_BYTES >> 20} MiB; cut it to the boots of interest")
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\r", "")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None


def triage_text(text: str, boot_loop_threshold: int = 2) -> Verdict:
    """The verdict a log implies. Lines carry no times, so each counts as one tick."""
    monitor = Monitor(LinuxFamily(), boot_loop_threshold=boot_loop_threshold, grace_s=float("inf"))
    lines = text.split("\n")
    for n, line in enumerate(lines):
        monitor.observe_line(line, float(n))
    return monitor.decide(float(len(lines)), final=True) or _unreachable()


def _unreachable() -> Verdict:
    raise AssertionError("decide(final=True) always returns a verdict")


def triage_file(path: Path, boot_loop_threshold: int = 2) -> Verdict:
    return triage_text(read_log(path), boot_loop_threshold)
