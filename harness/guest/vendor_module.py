"""A vendor's kernel module against the reference guest's kernel: it loads only when built
for that exact kernel (its vermagic), so say so before a boot, with the line that builds it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import ConfigError


def build_hint(kernel_version: str) -> str:
    headers = Path("/lib/modules") / kernel_version / "build"
    return (f"build it against the reference guest's kernel headers ({headers}, from Debian's "
            f"linux-headers-amd64; make setup installs them): make -C {headers} M=$PWD modules")


def module_kernel(module: Path) -> str:
    """The kernel release a module was built for (the first word of its vermagic)."""
    modinfo = shutil.which("modinfo") or "/sbin/modinfo"
    try:
        proc = subprocess.run([modinfo, "-F", "vermagic", str(module)], capture_output=True, text=True,
                              timeout=30, check=False)
    except OSError as exc:
        raise ConfigError(f"{module}: cannot run modinfo ({exc}): apt-get install kmod (make setup)") from None
    words = proc.stdout.split()
    if proc.returncode != 0 or not words:
        raise ConfigError(f"{module}: not a kernel module modinfo can read "
                          f"({(proc.stderr or 'no vermagic').strip()})")
    return words[0]


def check_vendor_module(module: Path, kernel_version: str, where: str) -> None:
    """ConfigError naming `where` (the profile's key) when `module` is not for `kernel_version`."""
    built_for = module_kernel(module)
    if built_for != kernel_version:
        raise ConfigError(f"{where}: {module} is built for kernel {built_for}, the reference guest runs "
                          f"{kernel_version}: {build_hint(kernel_version)}")
