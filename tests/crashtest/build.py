"""Build crashtest.ko, the module that provokes kernel reports at load (see crashtest.c).

`build_module(out_dir)` runs this directory's Makefile, which copies the sources
into out_dir and calls `make -C <headers> M=<out_dir> modules`, as
tests/vendor_driver/ does for its module; the headers are those of the kernel the
reference guest boots (/lib/modules/<release>/build) unless `kdir` is given.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import InfraError

from ..kmod_build import build_out_of_tree

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


class CrashtestBuildError(InfraError):
    """crashtest.ko cannot be built; the message names the fix and ends with the path."""


def build_module(out_dir: Path = DEFAULT_OUT, kdir: Path | None = None) -> Path:
    """Build out_dir/crashtest.ko; returns its path (tests/kmod_build.py: CrashtestBuildError
    when the headers, make or the compiler are missing, or the build fails)."""
    return build_out_of_tree(SOURCE_DIR, MODULE_NAME, out_dir, kdir, CrashtestBuildError)


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
