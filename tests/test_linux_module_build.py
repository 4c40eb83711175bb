"""The Linux sensor module builds, in both flavours, for the kernel the reference guest boots.

`make -C drivers/linux` turns one source (drivers/linux/harness_sensor.c plus the shared
interpreter in drivers/common) into two kernel modules with the same name:
drivers/build/linux/vulnerable/harness_sensor.ko and drivers/build/linux/hardened/harness_sensor.ko.
The initramfs insmods one of them with content_dir=..., so each must carry the guest kernel's
vermagic, take the sensor's parameters, and say which interpreter build it is.

Without the guest kernel headers the tests skip, except under CI=true where a missing
toolchain is a failure.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from harness.testing import skip_or_fail

from .conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
LINUX_DIR = REPO / "drivers" / "linux"
BUILD_DIR = REPO / "drivers" / "build" / "linux"
BUILDS = ("vulnerable", "hardened")
SENSOR_PARAMETERS = {"content_dir", "channel", "reload"}


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(LINUX_DIR), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def modinfo(ko: Path) -> list[tuple[str, str]]:
    """The key=value strings of a module's .modinfo ELF section, in order."""
    elf = ko.read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1, f"{ko} is not a 64-bit little-endian ELF file"
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + index * shentsize)
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    for index in range(shnum):
        name, offset, size = section(index)
        if elf[names_offset + name :].split(b"\0", 1)[0] == b".modinfo":
            pairs: list[tuple[str, str]] = []
            for entry in elf[offset : offset + size].split(b"\0"):
                key, equals, value = entry.decode().partition("=")
                if equals:
                    pairs.append((key, value))
            return pairs
    raise AssertionError(f"{ko} has no .modinfo section")


def tags(ko: Path, key: str) -> list[str]:
    return [value for name, value in modinfo(ko) if name == key]


def headers_problem() -> str | None:
    """Why drivers/linux/Makefile finds no guest kernel headers, or None when it does."""
    kdir = make("-s", "print-kdir")
    if kdir.returncode == 0:
        return None
    said = [line.strip() for line in kdir.stderr.splitlines() if line.strip() and not line.startswith("make")]
    return " ".join(said) or f"make print-kdir failed with status {kdir.returncode}"


@pytest.fixture(scope="module")
def guest_kernel() -> str:
    """The kernel release the reference guest boots, as the Makefile reports it."""
    fix = "apt-get install build-essential linux-image-amd64 linux-headers-amd64 (or make setup)"
    require_tool("make", fix)
    require_tool("gcc", fix)
    problem = headers_problem()
    if problem is not None:
        skip_or_fail(f"linux headers for the guest kernel are not installed: {problem}")
    release = make("-s", "print-kver")
    assert release.returncode == 0, release.stderr
    return release.stdout.strip()


@pytest.fixture(scope="module")
def modules(guest_kernel: str) -> dict[str, Path]:
    """Both builds, made the way the harness makes them: make -C drivers/linux."""
    build = make("all")
    assert build.returncode == 0, f"make -C drivers/linux failed:\n{build.stdout}\n{build.stderr}"
    return {name: BUILD_DIR / name / "harness_sensor.ko" for name in BUILDS}


def test_one_make_call_builds_both_modules_where_the_initramfs_expects_them(modules: dict[str, Path]) -> None:
    for name, ko in modules.items():
        assert ko.is_file(), f"the {name} build produced no {ko}"
        assert tags(ko, "name") == ["harness_sensor"], f"the {name} module is not called harness_sensor"


def test_each_module_is_built_for_the_kernel_the_guest_boots(
    guest_kernel: str, modules: dict[str, Path]
) -> None:
    for name, ko in modules.items():
        (vermagic,) = tags(ko, "vermagic")
        assert vermagic.startswith(guest_kernel + " "), (
            f"the {name} module's vermagic {vermagic!r} is not for the guest kernel {guest_kernel}"
        )


def test_each_module_takes_the_sensor_parameters(modules: dict[str, Path]) -> None:
    for name, ko in modules.items():
        declared = {value.split(":", 1)[0] for value in tags(ko, "parm") + tags(ko, "parmtype")}
        missing = SENSOR_PARAMETERS - declared
        assert not missing, f"the {name} module lacks the parameters {sorted(missing)}"
        types = dict(value.split(":", 1) for value in tags(ko, "parmtype"))
        assert types["content_dir"] == "charp" and types["channel"] == "uint", types


def test_the_two_builds_say_which_interpreter_they_carry(modules: dict[str, Path]) -> None:
    reported = {name: tags(ko, "sensor_build") for name, ko in modules.items()}
    assert reported == {"vulnerable": ["vulnerable"], "hardened": ["hardened"]}
    assert modules["vulnerable"].read_bytes() != modules["hardened"].read_bytes()


def test_a_clean_build_links_with_no_undefined_symbols_and_no_warnings(
    guest_kernel: str, tmp_path: Path
) -> None:
    build = make("all", f"BUILD_DIR={tmp_path}")
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    for name in BUILDS:
        assert (tmp_path / name / "harness_sensor.ko").is_file(), output
    complaints = [line for line in output.splitlines() if "warning" in line.lower() or "undefined" in line.lower()]
    assert not complaints, "\n".join(complaints)
