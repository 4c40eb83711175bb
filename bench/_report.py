"""Output of the benchmarks: progress lines on stderr, medians, the tables, the host, and
the options every benchmark takes."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the checkout on sys.path)
import libvirt

_T_START = time.monotonic()


# --------------------------------------------------------------------------- output

def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_s(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def host_description() -> dict[str, Any]:
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[:1]
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cores": os.cpu_count(), "cpu": model,
            "kernel": platform.release(), "qemu": qemu[0] if qemu else "?",
            "libvirt": libvirt.getVersion(), "python": platform.python_version()}


def common_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="artifacts root (default $HARNESS_ARTIFACTS or ./artifacts); each run "
                             "writes to <root>/bench-<run id>/")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up boots")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the harness's progress lines")
    return parser
