"""`harness content check FILE --target sys`: one content file through the real driver image.

The file is placed alone in a fresh content directory (under its own name when that is a
channel 291 file name, else as C-00000291-00000000-00000001.sys, the name `harness
reproduce` uses) and a fresh emulated machine boots the driver over it.  Nothing is shared
between two checks: each gets its own emulator, so no file can change what the next one sees.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from ..content.files import read_content_file
from ..errors import InputFileError
from ..paths import DRIVERS, DRIVERS_BUILD, INSTALLED
from .report import verdict
from .runner import Runner
from .zygote import Zygote

BUILDS = ("vulnerable", "hardened")
CHANNEL_NAME = re.compile(r"^C-00000291-\d{8}-\d{8}\.sys$")
DEFAULT_NAME = "C-00000291-00000000-00000001.sys"
BUILD_FIX = f"build it with `make -C {'$(python -m harness.paths)' if INSTALLED else 'drivers'} windows` (needs mingw-w64: `make setup`)"
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_SUBSYSTEM_NATIVE = 1


def driver_path(build: str) -> Path:
    """The built harnessflt.sys of `build`; InputFileError naming the fix when it is missing."""
    if build not in BUILDS:
        raise InputFileError(f"unknown sensor build {build!r}: use one of {', '.join(BUILDS)}")
    path = DRIVERS_BUILD / "windows" / build / "harnessflt.sys"
    if not path.is_file():
        raise InputFileError(f"{path}: the {build} driver is not built: {BUILD_FIX}")
    built = path.stat().st_mtime
    newer = [src for src in _driver_sources() if src.stat().st_mtime > built]
    if newer:  # judging yesterday's image would say nothing about today's source
        raise InputFileError(f"{path}: older than {newer[0]}: the {build} driver is stale: {BUILD_FIX}")
    return path


def _driver_sources() -> list[Path]:
    """What the image is built from: the Windows driver's code and the shared interpreter."""
    found: list[Path] = []
    for folder in (DRIVERS / "windows", DRIVERS / "common"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir()
                            if p.is_file() and (p.suffix in (".c", ".h", ".def") or p.name == "Makefile"))
    return found


def check_driver_image(path: Path) -> None:
    """Refuse anything but a native x64 PE image, with the file and the fix in one line."""
    import pefile  # speakeasy's own dependency

    try:
        pe = pefile.PE(str(path), fast_load=True)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such driver image: {BUILD_FIX}") from None
    except (pefile.PEFormatError, OSError) as exc:
        raise InputFileError(f"{path}: not a PE image ({exc}): give a Windows driver (.sys), "
                             f"or {BUILD_FIX}") from None
    if pe.FILE_HEADER.Machine != IMAGE_FILE_MACHINE_AMD64:
        raise InputFileError(f"{path}: built for machine {pe.FILE_HEADER.Machine:#x}, not x64 (0x8664): "
                             f"rebuild for x64 ({BUILD_FIX})")
    if pe.OPTIONAL_HEADER.Subsystem != IMAGE_SUBSYSTEM_NATIVE:
        raise InputFileError(f"{path}: subsystem {pe.OPTIONAL_HEADER.Subsystem}, not native (1): not a "
                             f"kernel driver; link with --subsystem,native ({BUILD_FIX})")


def check_file_sys(path: Path, build: str, *, driver: Path | None = None, zygote: Zygote | None = None,
                   **runner_options: Any) -> dict[str, Any]:
    """Boot the `build` driver (or `driver`) under the emulator with `path` as its only content.

    With `zygote` (a machine made once for that image, see zygote.py) the boot runs in a
    fork of it; `runner_options` then only choose the scenario (boot_start, ...)."""
    data = read_content_file(path)
    sys_path = zygote.sys_path if zygote is not None else driver if driver is not None else driver_path(build)
    check_driver_image(sys_path)
    name = path.name if CHANNEL_NAME.match(path.name) else DEFAULT_NAME
    with tempfile.TemporaryDirectory(prefix="harness-sys-") as tmp:
        content_dir = Path(tmp) / "HarnessSensor"
        content_dir.mkdir()
        (content_dir / name).write_bytes(data)
        if zygote is not None:
            run = zygote.run(content_dir, **runner_options)
        else:
            run = Runner(sys_path, content_dir, **runner_options).run()
    report = verdict(run, name, len(data), build)
    report["file"] = str(path)
    report["driver"] = str(sys_path)
    return report


def run_folder(content_dir: Path, build: str, *, driver: Path | None = None, **runner_options: Any) -> Any:
    """Boot the driver over a whole content folder (several files); returns the SysRun."""
    if not content_dir.is_dir():
        raise InputFileError(f"{content_dir}: not a directory of channel files")
    sys_path = driver if driver is not None else driver_path(build)
    check_driver_image(sys_path)
    return Runner(sys_path, content_dir, **runner_options).run()
