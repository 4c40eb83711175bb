"""Build crashtest.ko, the module that provokes kernel reports at load (see crashtest.c).

`build_module(out_dir)` runs this directory's Makefile, which copies the sources
into out_dir and calls `make -C <headers> M=<out_dir> modules`, as
tests/vendor_driver/ does for its module; the headers are those of the kernel the
reference guest boots (/lib/modules/<release>/build) unless `kdir` is given.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from harness.errors import InfraError

SOURCE_DIR = Path(__file__).resolve().parent
REPO = SOURCE_DIR.parents[1]
DEFAULT_OUT = REPO / "build" / "crashtest"
MODULE_NAME = "crashtest"
# The modes crashtest.c knows, and what each makes the kernel print (crashtest.c says how).
MODES: dict[str, str] = {
    "warn": "WARNING in the module's function; the load completes",
    "bug": "kernel BUG at crashtest.c",
    "null": "NULL pointer dereference",
    "gpf": "general protection fault on a non-canonical address",
    "divide": "divide error",
    "softlockup": "soft lockup (watchdog_thresh=1)",
    "rcu": "RCU stall of a preempted reader (rcu_cpu_stall_timeout=3)",
    "hung": "hung task in D state (hung_task_timeout_secs=1)",
    "panic": "panic() with a message, no report before it",
    "atomic": "scheduling while atomic; the load completes",
    "list": "list_add double add: kernel BUG at lib/list_debug.c",
    "stackprot": "stack-protector panic: the canary overwritten",
    "overflow": "stack guard page hit by recursion",
    "refcount": "refcount_t addition on 0 (a refcount WARNING); the load completes",
}
# Logs captured besides one per mode: name -> (mode, extra module parameters).  Without the
# panic sysctls, a stall or a hung task is reported and the machine runs on.
VARIANTS: dict[str, tuple[str, str]] = {
    "softlockup-nopanic": ("softlockup", "panic=0"),
    "rcu-nopanic": ("rcu", "panic=0"),
    "hung-nopanic": ("hung", "panic=0"),
}
READY = "crashtest: (done|loaded)"
CONTENT_DIR = "/var/lib/crashtest"
HEADERS_FIX = ("apt-get install build-essential linux-image-amd64 linux-headers-amd64 "
               "(or make setup)")


class CrashtestBuildError(InfraError):
    """crashtest.ko cannot be built; the message names the fix and ends with the path."""


def build_module(out_dir: Path = DEFAULT_OUT, kdir: Path | None = None) -> Path:
    """Build out_dir/crashtest.ko (Kbuild rebuilds only what changed); returns its path.

    make's output goes to out_dir/build.log; one build at a time per out_dir (a lock
    file there).  Raises CrashtestBuildError when the headers, make or the compiler
    are missing, or the build fails.
    """
    make = shutil.which("make")
    if make is None:
        raise CrashtestBuildError(f"make is not installed: {HEADERS_FIX}: {SOURCE_DIR}")
    out_dir = Path(out_dir).resolve()
    if out_dir.is_relative_to(SOURCE_DIR):
        raise CrashtestBuildError(f"build {MODULE_NAME}.ko outside its source tree, not in {out_dir}")
    argv = [make, "--no-print-directory", "-C", str(SOURCE_DIR), "all", f"BUILD_DIR={out_dir}"]
    if kdir is not None:
        argv.append(f"KDIR={kdir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        (out_dir / "build.log").write_text(proc.stdout + proc.stderr)
    ko = out_dir / f"{MODULE_NAME}.ko"
    if proc.returncode != 0 or not ko.is_file():
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        fix = f"{HEADERS_FIX}: " if "no kernel headers" in tail or "not installed" in tail else ""
        raise CrashtestBuildError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}\n{fix}{out_dir}")
    return ko


def profile_yaml(module: Path, mode: str, extra_params: str = "") -> str:
    """A harness config with one profile, `crashtest`, whose driver is `module` loaded with mode=`mode`."""
    params = f"mode={mode} {extra_params}".strip()
    return ("profiles:\n"
            "  crashtest:\n"
            "    driver:\n"
            f"      module: {module}\n"
            f"      params: \"{params}\"\n"
            f"      content_dir: {CONTENT_DIR}\n"
            f"      ready: '{READY}'\n")
