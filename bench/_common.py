"""What the VM benchmarks share, in one import: `import _common as c`.

The pieces live in small modules, each with one job:

  _repo         puts this checkout on sys.path (the benchmarks run from bench/)
  _report       progress lines, medians, tables, the host, the common options
  _cleanup      Cleanup (everything started is torn down on any exit), Activity, main_wrapper
  _setup        the guest, the content files, the profile, the artifacts directory
  _raw_qemu     the baseline: plain QEMU booting the same guest and devices
  _qemu_proc    a QEMU process's vCPU CPU time and cpu cgroup; QEMU's own start, timed apart
  _instrument   timing the harness's own calls without changing the harness
  _harness_run  one Machine driven as a test drives it, timed; the warm-up
"""

from __future__ import annotations

import _repo  # (the checkout on sys.path, before anything imports harness)
from _cleanup import Activity, Cleanup, foreign_qemu, main_wrapper
from _harness_run import HarnessRun, run_harness, warm_up
from _instrument import REC, Recorder, backend_mod, instrumented, machine_mod
from _raw_qemu import RawRun, raw_qemu_argv, run_raw, warm_raw
from _report import common_args, fmt_ratio, fmt_s, host_description, median, say, table
from _setup import (
    BANNER,
    BOOT_TIMEOUT_S,
    CF291,
    CRASH_NAME,
    GOOD,
    GOOD_NAME,
    HANG_TIMEOUT_S,
    PANIC,
    SENSOR_CRASH_FUNCTION,
    Setup,
    bench_profile,
    prepare,
)

from harness.vm.machine import Machine, MachineSpec

REPO = _repo.REPO

__all__ = [
    "Activity", "BANNER", "BOOT_TIMEOUT_S", "CF291", "CRASH_NAME", "Cleanup", "GOOD", "GOOD_NAME",
    "HANG_TIMEOUT_S", "HarnessRun", "Machine", "MachineSpec", "PANIC", "REC", "REPO", "RawRun",
    "Recorder", "SENSOR_CRASH_FUNCTION", "Setup", "backend_mod", "bench_profile", "common_args",
    "fmt_ratio", "fmt_s", "foreign_qemu", "host_description", "instrumented", "machine_mod",
    "main_wrapper", "median", "prepare", "raw_qemu_argv", "run_harness", "run_raw", "say", "table",
    "warm_raw", "warm_up",
]
