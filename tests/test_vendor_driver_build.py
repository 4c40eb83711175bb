"""The vendor stand-in driver (tests/vendor_driver, acme_guard.ko) builds and behaves.

acme_guard is what issue 10's tests use as "another vendor's driver": its own name,
parameters, content directory, content format (ACMR rule files), console lines and crash.
Here: its content writer's files are what the format says (host only); the module builds out
of tree for the kernel the reference guest boots (vermagic checked with modinfo against one of
that kernel's own modules); and three real boots of the reference guest under QEMU (TCG) with
the module loaded at boot-start time show `acme_guard: armed`, the `refused` lines, and an Oops
in acme_apply_rule.  The boots use a test-only /init (tests/vendor_driver/boot.py explains
why) and a `quiet loglevel=4` console, as a vendor's machine would have.

Without make/gcc/headers or QEMU the tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

from harness.guest import GuestBuildError, ReferenceGuest, build_reference_guest

from .conftest import require_tool
from .vendor_driver import content
from .vendor_driver.boot import Boot, boot_with_driver
from .vendor_driver.build import SOURCE_DIR, VendorDriverBuildError, build_module

SETUP_FIX = "apt-get install build-essential kmod linux-image-amd64 linux-headers-amd64 (or make setup)"
GUEST_FIX = ("apt-get install busybox-static dropbear-bin kmod cpio e2fsprogs xz-utils "
             "linux-image-amd64 linux-headers-amd64 (or make setup)")
QEMU_FIX = "apt-get install qemu-system-x86 (or make setup)"

# The driver: block a profile gives for it (issue 10).
PARAMS = "acme_dir=/var/lib/acme"
CONTENT_DIR = "/var/lib/acme"
READY = re.compile(r"acme_guard: armed")
REJECTED = re.compile(r"acme_guard: (?P<file>\S+): refused: (?P<reason>.*)")


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: a missing part fails the run)")
    pytest.skip(message)


# ------------------------------------------------------------------ content files (host only)

def _header(data: bytes) -> tuple[bytes, int, int, int]:
    """(magic, version, rule_count, checksum), read at the offsets the format gives."""
    magic = data[0:4]
    version, count = struct.unpack_from("<HH", data, 4)
    (checksum,) = struct.unpack_from("<I", data, 8)
    return magic, version, count, checksum


def _rules(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(id, action, pattern_len, pattern) of each 24-byte record after the 16-byte header."""
    out = []
    for pos in range(16, len(data) - 23, 24):
        rule_id, action, length = struct.unpack_from("<IBB", data, pos)
        out.append((rule_id, action, length, data[pos + 8:pos + 24]))
    return out


def _well_formed(data: bytes) -> list[str]:
    """What the driver's checks would find wrong with data (its action bytes aside)."""
    if len(data) < 16:
        return ["truncated"]
    magic, version, count, checksum = _header(data)
    problems = []
    if magic != b"ACMR":
        problems.append("bad magic")
    if version != 1:
        problems.append("bad version")
    if len(data) != 16 + 24 * count:
        problems.append("bad length")
    elif checksum != content.fnv1a32(data[16:]):
        problems.append("bad checksum")
    elif any(not 1 <= length <= 16 for _, _, length, _ in _rules(data)):
        problems.append("bad rule")
    return problems


def test_checksum_is_fnv1a_32() -> None:
    # Published FNV-1a 32-bit test vectors.
    assert content.fnv1a32(b"") == 0x811C9DC5
    assert content.fnv1a32(b"a") == 0xE40C292C
    assert content.fnv1a32(b"foobar") == 0xBF9CF968


def test_good_rules_pass_every_check_with_known_actions() -> None:
    data = content.good_rules()
    assert _well_formed(data) == []
    assert _header(data)[:3] == (b"ACMR", 1, 3) and len(data) == 16 + 3 * 24
    rules = _rules(data)
    assert {action for _, action, _, _ in rules} == {0, 1, 2}
    for _, _, length, pattern in rules:
        assert pattern[:length].isascii() and pattern[length:] == b"\0" * (16 - length)


@pytest.mark.parametrize("reason", sorted(content.REFUSALS))
def test_each_refused_file_breaks_exactly_its_own_check(reason: str) -> None:
    assert _well_formed(content.refused_rules(reason)) == [reason]


def test_unknown_refusal_reason_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'bad magic'.*'bad checksum'"):
        content.refused_rules("bad karma")


def test_crashing_rules_pass_every_check_but_carry_an_unknown_action() -> None:
    data = content.crashing_rules()
    assert _well_formed(data) == []
    actions = [action for _, action, _, _ in _rules(data)]
    assert [a for a in actions if a not in content.ACTIONS.values()] == [content.CRASH_ACTION]


# ------------------------------------------------------------------ build

@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme_guard.ko, built from scratch outside the source tree."""
    require_tool("make", SETUP_FIX)
    require_tool("gcc", SETUP_FIX)
    try:
        return build_module(tmp_path_factory.mktemp("vendor-driver"))
    except VendorDriverBuildError as exc:
        _skip_or_fail(f"cannot build acme_guard.ko: {exc}")
        raise


@pytest.fixture(scope="module")
def guest() -> ReferenceGuest:
    for tool in ("busybox", "dropbearkey", "xz", "modprobe", "make", "mke2fs", "debugfs"):
        require_tool(tool, GUEST_FIX)
    try:
        return build_reference_guest(progress=lambda _line: None)
    except GuestBuildError as exc:
        _skip_or_fail(f"cannot build the reference guest: {exc}")
        raise


def _modinfo(path: Path, field: str) -> list[str]:
    tool = require_tool("modinfo", SETUP_FIX)
    proc = subprocess.run([tool, "-F", field, str(path)], capture_output=True, text=True,
                          check=True)
    return proc.stdout.splitlines()


def test_module_builds_outside_its_source_tree_without_warnings(module: Path) -> None:
    assert module.name == "acme_guard.ko" and not module.is_relative_to(SOURCE_DIR)
    log = (module.parent / "build.log").read_text()
    complaints = [line for line in log.splitlines()
                  if "warning" in line.lower() or "undefined" in line.lower()]
    assert not complaints, "\n".join(complaints)
    leftovers = [p.name for p in SOURCE_DIR.iterdir()
                 if p.suffix in (".o", ".ko") or ".mod" in p.name or p.name.endswith(".cmd")
                 or p.name in ("Module.symvers", "modules.order")]
    assert not leftovers, f"build products in the source tree {SOURCE_DIR}: {leftovers}"


def test_vermagic_is_the_guest_kernels(module: Path, guest: ReferenceGuest) -> None:
    kver = guest.kernel_version
    own = sorted(Path("/lib/modules", kver, "kernel", "drivers", "block").glob("virtio_blk.ko*"))
    assert own, f"no virtio_blk module of the guest kernel {kver} under /lib/modules/{kver}"
    (vermagic,) = _modinfo(module, "vermagic")
    assert vermagic.startswith(kver + " ")
    assert vermagic == _modinfo(own[0], "vermagic")[0]


def test_module_has_its_own_name_and_parameters(module: Path) -> None:
    assert _modinfo(module, "name") == ["acme_guard"]
    params = dict(line.rsplit(" (", 1) for line in _modinfo(module, "parm"))
    types = {text.split(":", 1)[0]: kind.rstrip(")") for text, kind in params.items()}
    assert types == {"acme_dir": "charp", "max_rules": "uint"}


def test_missing_headers_is_one_clear_error(tmp_path: Path) -> None:
    require_tool("make", SETUP_FIX)
    headers = tmp_path / "no-headers"
    with pytest.raises(VendorDriverBuildError) as info:
        build_module(tmp_path / "out", kdir=headers)
    message = str(info.value)
    assert message.endswith(str(headers)) and "linux-headers-amd64" in message
    assert not (tmp_path / "out").exists()


def test_build_refuses_the_source_tree_as_output() -> None:
    with pytest.raises(VendorDriverBuildError, match="outside its source tree"):
        build_module(SOURCE_DIR / "build")


# ------------------------------------------------------------------ real boots

def _boot(module: Path, guest: ReferenceGuest, files: dict[str, bytes], work: Path) -> Boot:
    qemu = require_tool("qemu-system-x86_64", QEMU_FIX)
    boot = boot_with_driver(qemu, guest, module, PARAMS, CONTENT_DIR, files, work)
    print(f"\n[boot] {len(files)} file(s): QEMU exited after {boot.seconds:.1f} s")
    return boot


def _lines(boot: Boot, regex: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for line in boot.console.splitlines() if (m := regex.search(line))]


def _assert_powered_off(boot: Boot) -> None:
    assert "ACME-TEST: insmod rc=0" in boot.console, boot.console[-3000:]
    assert "reboot: Power down" in boot.console, boot.console[-3000:]
    assert "Oops" not in boot.console and "Kernel panic" not in boot.console


@pytest.mark.vm
def test_good_file_arms_the_driver(module: Path, guest: ReferenceGuest, tmp_path: Path) -> None:
    boot = _boot(module, guest, {"10-base.rules": content.good_rules()}, tmp_path)
    _assert_powered_off(boot)
    armed = _lines(boot, READY)
    assert len(armed) == 1 and armed[0].string.endswith(
        "acme_guard: armed (3 rules from 1 files, 0 refused)"), boot.console[-3000:]
    assert not _lines(boot, REJECTED)


@pytest.mark.vm
def test_refused_files_in_name_order_then_armed(module: Path, guest: ReferenceGuest,
                                                tmp_path: Path) -> None:
    reasons = sorted(content.REFUSALS)
    files = {"00-base.rules": content.good_rules()}
    files |= {f"{i:02d}-{reason.replace(' ', '-')}.rules": content.refused_rules(reason)
              for i, reason in enumerate(reasons, start=10)}
    boot = _boot(module, guest, files, tmp_path)
    _assert_powered_off(boot)
    refused = [(m["file"], m["reason"]) for m in _lines(boot, REJECTED)]
    assert [name for name, _ in refused] == sorted(files)[1:], boot.console[-3000:]
    for (name, said), reason in zip(refused, reasons):
        assert said.startswith(reason + " ("), f"{name}: {said!r} does not start with {reason!r}"
    armed = _lines(boot, READY)
    assert len(armed) == 1 and armed[0].string.endswith(
        f"armed (3 rules from {len(files)} files, {len(reasons)} refused)"), boot.console[-3000:]
    lines = boot.console.splitlines()
    assert lines.index(armed[0].string) > max(i for i, l in enumerate(lines) if REJECTED.search(l))


@pytest.mark.vm
def test_empty_content_dir_still_arms_and_says_so(module: Path, guest: ReferenceGuest,
                                                  tmp_path: Path) -> None:
    boot = _boot(module, guest, {}, tmp_path)
    _assert_powered_off(boot)
    armed = _lines(boot, READY)
    assert len(armed) == 1 and armed[0].string.endswith(
        f"acme_guard: armed (no rule files in {CONTENT_DIR})"), boot.console[-3000:]


@pytest.mark.vm
def test_crashing_file_oopses_in_the_drivers_own_function(module: Path, guest: ReferenceGuest,
                                                          tmp_path: Path) -> None:
    boot = _boot(module, guest, {"10-crash.rules": content.crashing_rules()}, tmp_path)
    console = boot.console
    order = [r"ACME-TEST: insmod ", r"BUG: kernel NULL pointer dereference, address: 0+8\b",
             r"Oops: ", r"RIP: 0010:acme_apply_rule\+0x[0-9a-f]+/0x[0-9a-f]+ \[acme_guard\]",
             r"Kernel panic - not syncing"]
    pos = 0
    for pattern in order:
        match = re.compile(pattern).search(console, pos)
        assert match, f"/{pattern}/ not found after offset {pos}; console tail:\n{console[-3000:]}"
        pos = match.end()
    assert not _lines(boot, READY) and "insmod rc=" not in console
