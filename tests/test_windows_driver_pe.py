"""The Windows sensor builds into a boot-start minifilter image that Windows could load.

`make -C drivers/windows` cross-compiles one source (drivers/windows/harnessflt.c plus the
shared interpreter in drivers/common) with Debian's mingw-w64 into two drivers:
drivers/build/windows/vulnerable/harnessflt.sys and drivers/build/windows/hardened/harnessflt.sys.
Nothing here runs Windows, so these tests check what the kernel loader and the Filter Manager
will look at: a native-subsystem AMD64 PE32+ with an entry point and base relocations that
imports nothing but ntoskrnl.exe and FLTMGR.SYS, registers itself as a minifilter, and
(after `make sign`) carries an Authenticode signature. The INF must install it as a boot-start
file-system minifilter in the FSFilter Activity Monitor group at an altitude of that group.

Without the cross toolchain (or openssl/osslsigncode for signing) the tests skip, except under
CI=true where a missing toolchain is a failure.
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pefile
import pytest

from .conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
WINDOWS_DIR = REPO / "drivers" / "windows"
BUILD_DIR = REPO / "drivers" / "build" / "windows"
INF_PATH = WINDOWS_DIR / "harnessflt.inf"
BUILDS = ("vulnerable", "hardened")
TOOLCHAIN_FIX = "apt-get install mingw-w64 (or run `make setup` at the repo root)"
SIGNING_FIX = "apt-get install osslsigncode openssl (or run `make setup` at the repo root)"

IMAGE_FILE_MACHINE_AMD64 = 0x8664
PE32_PLUS_MAGIC = 0x20B
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE = 0x0040
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_WRITE = 0x80000000
EXPECTED_IMPORTS = {"ntoskrnl.exe", "fltmgr.sys"}
ACTIVITY_MONITOR_ALTITUDES = range(360000, 390000)  # FSFilter Activity Monitor: 360000-389999


# ----------------------------------------------------------------------------- building


@contextmanager
def build_lock() -> Iterator[None]:
    """One `make` at a time, also across pytest-xdist workers that share the build tree."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".pytest-make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make(*targets: str) -> None:
    with build_lock():
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(WINDOWS_DIR), *targets],
            cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
        )
    assert result.returncode == 0, (
        f"make -C drivers/windows {' '.join(targets)} failed with status {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


@pytest.fixture(scope="module")
def drivers() -> dict[str, Path]:
    """Both builds, freshly made by `make -C drivers/windows`."""
    require_tool("x86_64-w64-mingw32-gcc", TOOLCHAIN_FIX)
    require_tool("x86_64-w64-mingw32-dlltool", TOOLCHAIN_FIX)
    make()
    return {build: BUILD_DIR / build / "harnessflt.sys" for build in BUILDS}


@pytest.fixture(scope="module")
def signed_drivers(drivers: dict[str, Path]) -> dict[str, Path]:
    """The test-signed copies that `make -C drivers/windows sign` writes next to the INF."""
    require_tool("openssl", SIGNING_FIX)
    require_tool("osslsigncode", SIGNING_FIX)
    make("sign")
    return {build: BUILD_DIR / build / "signed" / "harnessflt.sys" for build in BUILDS}


def load_pe(path: Path) -> pefile.PE:
    assert path.is_file(), f"{path} was not built"
    return pefile.PE(str(path))


def imported_functions(pe: pefile.PE) -> dict[str, set[str]]:
    """Lower-case DLL name -> names of the functions imported from it."""
    return {
        entry.dll.decode().lower(): {imp.name.decode() for imp in entry.imports if imp.name}
        for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])
    }


def data_directory(pe: pefile.PE, name: str) -> pefile.Structure:
    return pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY[name]]


# ------------------------------------------------------------------------- the images


@pytest.mark.parametrize("build", BUILDS)
def test_each_build_is_a_native_amd64_pe32plus_image(drivers: dict[str, Path], build: str) -> None:
    pe = load_pe(drivers[build])
    assert pe.OPTIONAL_HEADER.Magic == PE32_PLUS_MAGIC, "not PE32+"
    assert pe.FILE_HEADER.Machine == IMAGE_FILE_MACHINE_AMD64, "not built for AMD64"
    assert pe.OPTIONAL_HEADER.Subsystem == IMAGE_SUBSYSTEM_NATIVE, "a driver needs the native subsystem"
    assert pe.OPTIONAL_HEADER.AddressOfEntryPoint != 0, "no entry point (DriverEntry)"


@pytest.mark.parametrize("build", BUILDS)
def test_driver_imports_only_the_kernel_and_the_filter_manager(drivers: dict[str, Path], build: str) -> None:
    imports = imported_functions(load_pe(drivers[build]))
    assert set(imports) == EXPECTED_IMPORTS, (
        f"{build} imports from {sorted(imports)}; a boot-start minifilter may only use "
        f"{sorted(EXPECTED_IMPORTS)} (an implicit memcpy or a libgcc helper would show up here)"
    )


@pytest.mark.parametrize("build", BUILDS)
def test_each_dll_has_one_import_descriptor(drivers: dict[str, Path], build: str) -> None:
    """Two import libraries for one DLL (mingw's libntoskrnl.a next to our own) would give the
    image two ntoskrnl.exe descriptors; drivers/windows/ntoskrnl.def is the one list."""
    names = [entry.dll.decode().lower() for entry in load_pe(drivers[build]).DIRECTORY_ENTRY_IMPORT]
    assert sorted(names) == sorted(set(names)), f"{build}: import descriptors {names}"


@pytest.mark.parametrize("build", BUILDS)
def test_driver_allocates_pool_with_exallocatepool2(drivers: dict[str, Path], build: str) -> None:
    """ExAllocatePoolWithTag is deprecated (Windows 10 2004: ExAllocatePool2, zeroed memory)."""
    kernel = imported_functions(load_pe(drivers[build]))["ntoskrnl.exe"]
    assert "ExAllocatePool2" in kernel
    assert not {"ExAllocatePoolWithTag", "ExAllocatePool", "ExAllocatePoolWithQuotaTag"} & kernel


@pytest.mark.parametrize("build", BUILDS)
def test_driver_registers_and_starts_a_minifilter(drivers: dict[str, Path], build: str) -> None:
    fltmgr = imported_functions(load_pe(drivers[build]))["fltmgr.sys"]
    assert {"FltRegisterFilter", "FltStartFiltering", "FltUnregisterFilter"} <= fltmgr


@pytest.mark.parametrize("build", BUILDS)
def test_driver_can_be_loaded_at_any_address(drivers: dict[str, Path], build: str) -> None:
    pe = load_pe(drivers[build])
    relocations = data_directory(pe, "IMAGE_DIRECTORY_ENTRY_BASERELOC")
    assert relocations.VirtualAddress and relocations.Size, "no base relocation directory"
    assert pe.OPTIONAL_HEADER.DllCharacteristics & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE


@pytest.mark.parametrize("build", BUILDS)
def test_no_section_is_both_writable_and_executable(drivers: dict[str, Path], build: str) -> None:
    both = IMAGE_SCN_MEM_WRITE | IMAGE_SCN_MEM_EXECUTE
    wx = [s.Name.rstrip(b"\0").decode() for s in load_pe(drivers[build]).sections
          if s.Characteristics & both == both]
    assert not wx, f"writable and executable sections {wx} (HVCI refuses to load such a driver)"


@pytest.mark.parametrize("build", BUILDS)
def test_each_build_names_its_own_interpreter_build(drivers: dict[str, Path], build: str) -> None:
    """The marker line says build=vulnerable or build=hardened: the string comes from CHF_HARDENED."""
    image = drivers[build].read_bytes()
    other = next(b for b in BUILDS if b != build)
    assert b"HARNESS-SENSOR-%s build=%s" in image  # LOADED at boot, RELOADED through the port
    assert b"LOADED\0" in image and b"RELOADED\0" in image
    assert build.encode() in image and other.encode() not in image


@pytest.mark.parametrize("build", BUILDS)
def test_signed_copy_carries_an_authenticode_signature(
    drivers: dict[str, Path], signed_drivers: dict[str, Path], build: str
) -> None:
    security = data_directory(load_pe(signed_drivers[build]), "IMAGE_DIRECTORY_ENTRY_SECURITY")
    assert security.VirtualAddress and security.Size, "the signed copy has no certificate table"
    unsigned = data_directory(load_pe(drivers[build]), "IMAGE_DIRECTORY_ENTRY_SECURITY")
    assert unsigned.Size == 0, "make sign must leave the unsigned build untouched"
    assert (signed_drivers[build].parent / "harnessflt.inf").is_file(), "the INF belongs next to the signed .sys"


# ------------------------------------------------------------------------------ the INF


@dataclass
class Inf:
    """An INF file as Setup reads it: sections of `key = value` lines or bare lines, %strkey% tokens."""

    sections: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Inf:
        inf = cls()
        current: list[tuple[str | None, str]] | None = None
        for raw in text.splitlines():
            line = strip_comment(raw).strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = inf.sections.setdefault(line[1:-1].strip().lower(), [])
                continue
            assert current is not None, f"INF line outside a section: {raw!r}"
            key, equals, value = partition_unquoted(line, "=")
            current.append((key.strip().lower(), value.strip()) if equals else (None, line))
        return inf

    @property
    def strings(self) -> dict[str, str]:
        return {key: unquote(value) for key, value in self.sections.get("strings", []) if key}

    def expand(self, value: str) -> str:
        """Replace %strkey% tokens from [Strings]; numeric DIRIDs such as %12% stay."""
        strings = self.strings
        parts = value.split("%")
        out = parts[0]
        for index in range(1, len(parts), 2):
            token = parts[index]
            rest = parts[index + 1] if index + 1 < len(parts) else ""
            out += (strings[token.lower()] if token.lower() in strings else f"%{token}%") + rest
        return out

    def values(self, section: str, key: str) -> list[str]:
        return [unquote(self.expand(v)) for k, v in self.sections.get(section.lower(), []) if k == key.lower()]

    def value(self, section: str, key: str) -> str:
        found = self.values(section, key)
        assert len(found) == 1, f"[{section}] should have exactly one {key}, has {found}"
        return found[0]

    def lines(self, section: str) -> list[str]:
        return [self.expand(v) for k, v in self.sections.get(section.lower(), []) if k is None]


def strip_comment(line: str) -> str:
    return partition_unquoted(line, ";")[0]


def partition_unquoted(line: str, separator: str) -> tuple[str, str, str]:
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            return line[:index], separator, line[index + 1 :]
    return line, "", ""


def split_fields(line: str) -> list[str]:
    fields: list[str] = []
    rest = line
    while True:
        head, comma, rest = partition_unquoted(rest, ",")
        fields.append(unquote(head.strip()))
        if not comma:
            return fields


def unquote(value: str) -> str:
    return value.replace('"', "").strip()


@pytest.fixture(scope="module")
def inf() -> Inf:
    return Inf.parse(INF_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def service_section(inf: Inf) -> str:
    """The ServiceInstall section named by AddService in the x64 DefaultInstall.Services section."""
    add_service = split_fields(inf.value("DefaultInstall.NTamd64.Services", "AddService"))
    assert add_service[0] == "harnessflt", "the service (and filter) name is harnessflt"
    return add_service[2]


def test_inf_installs_a_boot_start_file_system_minifilter(inf: Inf, service_section: str) -> None:
    assert inf.value("Version", "Class") == "ActivityMonitor"
    assert int(inf.value(service_section, "StartType"), 0) == 0, "SERVICE_BOOT_START: runs during every boot"
    assert int(inf.value(service_section, "ServiceType"), 0) == 2, "SERVICE_FILE_SYSTEM_DRIVER"
    assert inf.value(service_section, "LoadOrderGroup") == "FSFilter Activity Monitor"
    assert inf.value(service_section, "Dependencies") == "FltMgr"
    assert inf.value(service_section, "ServiceBinary") == r"%13%\harnessflt.sys", "run from the driver store"
    copy_section = inf.value("DefaultInstall.NTamd64", "CopyFiles")
    assert "harnessflt.sys" in inf.lines(copy_section)
    assert any(k == copy_section.lower() and v == "13" for k, v in inf.sections["destinationdirs"])


def test_inf_declares_a_default_instance_at_an_activity_monitor_altitude(inf: Inf, service_section: str) -> None:
    add_reg = inf.value(service_section, "AddReg")
    registry = [split_fields(line) for line in inf.lines(add_reg)]
    values = {(root, subkey, name): data for root, subkey, name, _flags, data in registry}
    for instances in ("Instances", r"Parameters\Instances"):
        default = values[("HKR", instances, "DefaultInstance")]
        altitude = values[("HKR", f"{instances}\\{default}", "Altitude")]
        assert int(altitude) in ACTIVITY_MONITOR_ALTITUDES, f"altitude {altitude} is outside 360000-389999"
        assert int(values[("HKR", f"{instances}\\{default}", "Flags")], 0) == 0, "attach automatically"


def test_inf_catalog_is_named_for_signed_installs(inf: Inf) -> None:
    assert inf.value("Version", "CatalogFile") == "harnessflt.cat"
