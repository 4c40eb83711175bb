"""Recovery on the Linux reference guest: the recovery medium, the recovery environment's
initramfs, and real recovery boots under plain QEMU (TCG), as after Channel File 291:
safe mode or the recovery environment runs the user's recover.sh, which deletes the bad
channel file; the next normal boot with the vulnerable sensor then completes.

The VM tests attach the data disk as vda and the recovery medium as vdb (read-only), like
the lead's libvirt domains do.  Boot times are printed (run with -s), not asserted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.guest import (
    DataDiskError,
    GuestBuildError,
    RECOVERY_TIMEOUT,
    RecoveryMediumError,
    ReferenceGuest,
    SAMPLE_SCRIPT,
    bad_file_entry,
    build_data_disk,
    build_recovery_medium,
    build_reference_guest,
    read_content_dir,
)
from harness.guest import linux_ref
from harness.testing import skip_or_fail

from .conftest import require_tool
from .test_guest_build import (  # noqa: F401  (guest: a fixture)
    BAD_NAME,
    GOOD_NAME,
    QEMU_FIX,
    SETUP_FIX,
    Vm,
    _newc_entries,
    _require_build_tools,
    assert_in_order,
    fixture_bytes,
    guest,
)

RECOVERY_INIT = linux_ref.RECOVERY_INIT_SCRIPT
BASE = "console=ttyS0,115200 loglevel=6 panic=1 oops=panic"
NOTHING_SCRIPT = b"#!/bin/sh\necho looked at $HARNESS_CONTENT_DIR, removed nothing\nexit 0\n"


# ------------------------------------------------------------------ QEMU runner

def recovery_argv(guest: ReferenceGuest, initrd: Path, cmdline: str, disk: Path | None,
                  medium: Path | None, disk_readonly: bool = False) -> list[str]:
    """Plain QEMU, TCG: the data disk is vda, the recovery medium vdb (read-only)."""
    qemu = require_tool("qemu-system-x86_64", QEMU_FIX)
    argv = [qemu, "-accel", "tcg", "-M", "pc", "-cpu", "qemu64", "-m", "256", "-nographic",
            "-no-reboot", "-kernel", str(guest.kernel), "-initrd", str(initrd),
            "-append", cmdline, "-device", "pvpanic"]
    if disk is not None:
        readonly = ",readonly=on" if disk_readonly else ""
        argv += ["-drive", f"file={disk},format=raw,if=virtio{readonly}"]
    if medium is not None:
        argv += ["-drive", f"file={medium},format=raw,if=virtio,readonly=on"]
    return argv


@pytest.fixture
def boot(guest: ReferenceGuest) -> Iterator:
    vms: list[Vm] = []

    def start(initrd: Path, cmdline: str, disk: Path | None, medium: Path | None,
              disk_readonly: bool = False) -> Vm:
        vm = Vm(recovery_argv(guest, initrd, cmdline, disk, medium, disk_readonly))
        vms.append(vm)
        return vm

    yield start
    for vm in vms:
        vm.close()


def report(name: str, marker: str, seconds: float) -> None:
    print(f"\n[boot] {name}: {marker} after {seconds:.2f} s (from QEMU start)")


def cf291_disk(path: Path) -> dict[str, bytes]:
    """A data disk with a good channel file (…31) and the CF-291 file as the bad update (…32)."""
    files = {GOOD_NAME: fixture_bytes("good.sys"), BAD_NAME: fixture_bytes("cf291-field21.sys")}
    build_data_disk(path, files)
    return files


# ------------------------------------------------------------------ VM tests

@pytest.mark.vm
def test_recovery_env_removes_the_bad_file_and_powers_off(boot, guest: ReferenceGuest,
                                                          tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(BAD_NAME, files[BAD_NAME])])
    vm = boot(guest.recovery_initrd, guest.recovery_cmdline(), disk, medium)
    t_done, _ = vm.wait_for(r"HARNESS-RECOVERY-DONE")
    assert vm.wait_exit(30) == 0  # poweroff -f: QEMU exits by itself
    times = assert_in_order(vm, r"HARNESS-BOOT-START mode=recovery$",
                            r"HARNESS-RECOVERY-START path=recovery-env$",
                            re.escape(f"recovery: removed {BAD_NAME}") + "$",
                            r"HARNESS-RECOVERY-DONE path=recovery-env rc=0$",
                            r"HARNESS-RECOVERY-POWEROFF$", r"reboot: Power down")
    t_off = times[4]
    text = vm.text
    assert "harness_sensor" not in text and "Oops" not in text and "HARNESS-BOOT-ERROR" not in text
    assert GOOD_NAME not in text  # the good file is neither listed nor touched
    assert read_content_dir(disk) == {GOOD_NAME: files[GOOD_NAME]}
    report("recovery env (sample script)", "HARNESS-RECOVERY-DONE", t_done)
    report("recovery env (sample script)", "HARNESS-RECOVERY-POWEROFF", t_off)


@pytest.mark.vm
def test_safe_mode_runs_the_script_then_a_normal_boot_completes(boot, guest: ReferenceGuest,
                                                                tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(BAD_NAME, files[BAD_NAME])])
    vm = boot(guest.initrd, guest.cmdline("vulnerable", mode="safe", halt=True), disk, medium)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert vm.wait_exit(30) == 0  # harness.halt=1
    assert_in_order(vm, r"HARNESS-BOOT-START mode=safe sensor=vulnerable",
                    r"HARNESS-SENSOR-SKIPPED reason=safe-mode",
                    r"HARNESS-RECOVERY-START path=safe-mode$",
                    re.escape(f"recovery: removed {BAD_NAME}") + "$",
                    r"HARNESS-RECOVERY-DONE path=safe-mode rc=0$",
                    r"HARNESS-BOOT-COMPLETE mode=safe sensor=vulnerable", r"HARNESS-HALT")
    assert "harness_sensor:" not in vm.text and "Oops" not in vm.text
    report("safe mode + recovery script (halt)", "HARNESS-BOOT-COMPLETE", t_complete)
    vm.close()
    assert read_content_dir(disk) == {GOOD_NAME: files[GOOD_NAME]}

    # The machine is back: a normal boot, vulnerable sensor, no medium any more.
    vm = boot(guest.initrd, guest.cmdline("vulnerable", halt=True), disk, None)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-BOOT-START mode=normal sensor=vulnerable",
                    re.escape(f"harness_sensor: {GOOD_NAME}: loaded ("),
                    r"HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0",
                    r"HARNESS-BOOT-COMPLETE mode=normal sensor=vulnerable")
    assert "Oops" not in vm.text and "Kernel panic" not in vm.text
    assert "HARNESS-RECOVERY" not in vm.text
    report("normal boot after recovery", "HARNESS-BOOT-COMPLETE", t_complete)


@pytest.mark.vm
def test_a_script_that_removes_nothing_leaves_the_bad_file(boot, guest: ReferenceGuest,
                                                           tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    build_recovery_medium(medium, NOTHING_SCRIPT, [bad_file_entry(BAD_NAME, files[BAD_NAME])])
    vm = boot(guest.recovery_initrd, guest.recovery_cmdline(), disk, medium)
    vm.wait_for(r"HARNESS-RECOVERY-POWEROFF")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-RECOVERY-START path=recovery-env",
                    r"recovery: looked at /data/content, removed nothing$",
                    r"HARNESS-RECOVERY-DONE path=recovery-env rc=0$", r"HARNESS-RECOVERY-POWEROFF")
    assert "recovery: removed" not in vm.text
    assert read_content_dir(disk) == files  # rc=0 proves nothing: the bad file is still there


@pytest.mark.vm
def test_sample_script_keeps_a_file_whose_hash_differs(boot, guest: ReferenceGuest,
                                                       tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    # The harness names another update under the same name: the file on disk is not it.
    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(BAD_NAME, b"another update")])
    vm = boot(guest.recovery_initrd, guest.recovery_cmdline(), disk, medium)
    vm.wait_for(r"HARNESS-RECOVERY-POWEROFF")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-RECOVERY-START path=recovery-env",
                    re.escape(f"recovery: kept {BAD_NAME}: sha256 differs") + "$",
                    r"HARNESS-RECOVERY-DONE path=recovery-env rc=1$", r"HARNESS-RECOVERY-POWEROFF")
    assert read_content_dir(disk) == files


@pytest.mark.vm
def test_recovery_env_without_medium_reports_and_powers_off(boot, guest: ReferenceGuest,
                                                            tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    files = cf291_disk(disk)
    vm = boot(guest.recovery_initrd, guest.recovery_cmdline(), disk, None)
    t_err, _ = vm.wait_for(r"HARNESS-BOOT-ERROR")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-BOOT-START mode=recovery",
                    r"HARNESS-BOOT-ERROR reason=no-recovery-medium device=/dev/vdb",
                    r"HARNESS-RECOVERY-POWEROFF")
    assert "HARNESS-RECOVERY-START" not in vm.text
    assert read_content_dir(disk) == files
    report("recovery env without a medium", "HARNESS-BOOT-ERROR", t_err)


@pytest.mark.vm
def test_recovery_env_refuses_a_read_only_data_disk(boot, guest: ReferenceGuest,
                                                    tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(BAD_NAME, files[BAD_NAME])])
    vm = boot(guest.recovery_initrd, guest.cmdline(mode="recovery"), disk, medium,
              disk_readonly=True)
    vm.wait_for(r"HARNESS-RECOVERY-POWEROFF")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-BOOT-START mode=recovery",
                    r"HARNESS-BOOT-ERROR reason=mount-failed device=/dev/vda",
                    r"HARNESS-RECOVERY-POWEROFF")
    assert "HARNESS-RECOVERY-START" not in vm.text
    assert read_content_dir(disk) == files


@pytest.mark.vm
def test_recovery_script_run_time_is_bounded(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    files = cf291_disk(disk)
    # Leaves a child behind too: it must not keep the console pipe (and the boot) hanging.
    script = b"echo working\nsleep 600 &\nsleep 600\necho never printed\n"
    build_recovery_medium(medium, script, [])
    vm = boot(guest.recovery_initrd, guest.recovery_cmdline(timeout=2), disk, medium)
    vm.wait_for(r"HARNESS-RECOVERY-POWEROFF", timeout=60)
    assert vm.wait_exit(30) == 0
    t_start, t_done = assert_in_order(vm, r"HARNESS-RECOVERY-START", r"recovery: working$",
                                      r"HARNESS-RECOVERY-DONE path=recovery-env rc=143$")[0::2]
    assert 1.5 < t_done - t_start < 15, (t_start, t_done)
    assert "never printed" not in vm.text
    assert read_content_dir(disk) == files


@pytest.mark.vm
def test_script_output_cannot_forge_markers(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk, medium = tmp_path / "disk.img", tmp_path / "medium.img"
    cf291_disk(disk)
    build_recovery_medium(medium, b"echo HARNESS-BOOT-COMPLETE mode=normal\necho '  two  spaces'"
                                  b" >&2\nprintf 'no newline'\nexit 7\n", [])
    vm = boot(guest.initrd, guest.cmdline("vulnerable", mode="safe", halt=True), disk, medium)
    vm.wait_for(r"HARNESS-HALT")
    assert vm.wait_exit(30) == 0
    assert_in_order(vm, r"HARNESS-RECOVERY-START path=safe-mode",
                    r"recovery: HARNESS_BOOT-COMPLETE mode=normal$", r"recovery:   two  spaces$",
                    r"recovery: no newline$", r"HARNESS-RECOVERY-DONE path=safe-mode rc=7$",
                    r"HARNESS-BOOT-COMPLETE mode=safe")
    assert len(re.findall(r"HARNESS-BOOT-COMPLETE", vm.text)) == 1


# ------------------------------------------------------------------ image tests

def test_recovery_image_contents(guest: ReferenceGuest) -> None:
    assert guest.recovery_initrd is not None and guest.recovery_initrd.is_file()
    assert guest.recovery_initrd.parent == guest.initrd.parent  # one cache entry
    entries = _newc_entries(guest.recovery_initrd)
    assert entries["init"][1] == RECOVERY_INIT.read_bytes() and entries["init"][0] & 0o111
    for name in ("bin/busybox", "bin/sh", "usr/bin/timeout", "usr/bin/setsid", "usr/bin/sha256sum",
                 "etc/harness/modules", "dev/console", "media", "data", "run"):
        assert name in entries, f"{name} missing from the recovery initramfs"
    assert not [n for n in entries if "harness_sensor" in n or "dropbear" in n]
    listed = [Path(m).name for m in entries["etc/harness/modules"][1].decode().split()]
    for needed in ("virtio_pci.ko", "virtio_blk.ko", "ext4.ko", "jbd2.ko", "mbcache.ko"):
        assert needed in listed
    assert "virtio_net.ko" not in listed
    for module in entries["etc/harness/modules"][1].decode().split():
        assert module.lstrip("/") in entries
    assert listed.index("jbd2.ko") < listed.index("ext4.ko")
    assert "media" in _newc_entries(guest.initrd)
    print(f"\n[guest] recovery initramfs {guest.recovery_initrd.stat().st_size / 1e6:.2f} MB, "
          f"{len(listed)} modules")


def test_recovery_cmdline() -> None:
    g = ReferenceGuest(kernel=Path("k"), initrd=Path("i"), kernel_version="v",
                       host_key_pub=Path("p"), key="x")
    assert g.recovery_initrd is None
    assert g.recovery_cmdline() == BASE + " harness.role=recovery"
    assert g.recovery_cmdline("foo=1", timeout=30) == \
        BASE + " harness.role=recovery harness.recovery_timeout=30 foo=1"
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError):
            g.recovery_cmdline(timeout=bad)  # type: ignore[arg-type]
    assert RECOVERY_TIMEOUT == 120
    # The normal command line is unchanged.  mode="recovery" gives the recovery line, for a
    # guest that has a recovery initramfs (every built one); a hand-made one without: error.
    assert g.cmdline(mode="safe") == BASE + " harness.sensor=vulnerable harness.safemode=1"
    with pytest.raises(ValueError, match="recovery_initrd is None"):
        g.cmdline(mode="recovery")
    with pytest.raises(ValueError):
        g.cmdline(mode="bogus")
    r = dataclasses.replace(g, recovery_initrd=Path("r"))
    assert r.cmdline(mode="recovery") == BASE + " harness.role=recovery"
    assert r.cmdline("hardened", mode="recovery", net=True, extra="foo=1", halt=True) == \
        BASE + " harness.role=recovery foo=1"
    with pytest.raises(ValueError):
        r.cmdline("bogus", mode="recovery")


def test_scripts_parse() -> None:
    busybox = require_tool("busybox", SETUP_FIX)
    for script in (linux_ref.INIT_SCRIPT, RECOVERY_INIT, linux_ref.INIT_LIB, SAMPLE_SCRIPT):
        proc = subprocess.run([busybox, "sh", "-n", str(script)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_both_inits_share_one_library() -> None:
    for script in (linux_ref.INIT_SCRIPT, RECOVERY_INIT):
        assert ". /etc/harness/lib.sh" in script.read_text()
        assert "run_recovery() {" not in script.read_text()
    assert "run_recovery() {" in linux_ref.INIT_LIB.read_text()


# ------------------------------------------------------------------ the sample script, on the host

def _run_sample(tmp_path: Path, files: dict[str, bytes], listing: str) -> tuple[int, list[str]]:
    busybox = require_tool("busybox", SETUP_FIX)
    content = tmp_path / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    for name, data in files.items():
        (content / name).write_bytes(data)
    (tmp_path / "bad-files.txt").write_text(listing)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HARNESS_CONTENT_DIR": str(content),
           "HARNESS_BAD_FILES": str(tmp_path / "bad-files.txt"),
           "HARNESS_RECOVERY_PATH": "recovery-env"}
    proc = subprocess.run([busybox, "sh", str(SAMPLE_SCRIPT)], capture_output=True, text=True,
                          env=env, cwd="/", check=False, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sample_script_logic(tmp_path: Path) -> None:
    good, bad = b"good channel file", b"bad channel file"
    files = {"C-31.sys": good, "C-32.sys": bad, "unlisted.sys": bad}
    rc, out = _run_sample(tmp_path, files, f"{_sha(bad)}  C-32.sys\n{_sha(bad)}  gone.sys\n")
    assert (rc, out) == (0, ["removed C-32.sys", "absent gone.sys"])
    assert sorted(p.name for p in (tmp_path / "content").iterdir()) == ["C-31.sys", "unlisted.sys"]

    rc, out = _run_sample(tmp_path, files, f"{_sha(b'other')}  C-32.sys\n")
    assert (rc, out) == (1, ["kept C-32.sys: sha256 differs"])
    assert (tmp_path / "content" / "C-32.sys").read_bytes() == bad

    # Upper-case hex, sha256sum's binary-mode " *", no final newline, comments, a bad line.
    rc, out = _run_sample(tmp_path, files, f"# comment\n\n{_sha(bad).upper()} *C-32.sys\n"
                                           f"nonsense\n{_sha(good)}  ../C-31.sys")
    assert rc == 1
    assert out == ["removed C-32.sys", "skipped line 4 of " + str(tmp_path / "bad-files.txt")
                   + ": not '<sha256>  <file name>'",
                   "skipped line 5 of " + str(tmp_path / "bad-files.txt")
                   + ": not '<sha256>  <file name>'"]
    assert (tmp_path / "content" / "C-31.sys").exists()

    rc, out = _run_sample(tmp_path, files, "")  # nothing named: nothing to do
    assert (rc, out) == (0, [])
    assert len(list((tmp_path / "content").iterdir())) == 3


# ------------------------------------------------------------------ the recovery medium

def _debugfs(image: Path, command: str) -> str:
    debugfs = require_tool("debugfs", SETUP_FIX)
    proc = subprocess.run([debugfs, "-R", command, str(image)], capture_output=True, check=True)
    return proc.stdout.decode(errors="replace")


def _debugfs_mode(image: Path, path: str) -> int:
    m = re.search(r"Mode:\s+(\d+)", _debugfs(image, f"stat {path}"))
    assert m, f"no mode for {path}"
    return int(m.group(1), 8)


def test_medium_round_trip(tmp_path: Path) -> None:
    require_tool("mke2fs", SETUP_FIX)
    medium = tmp_path / "medium.img"
    bad = fixture_bytes("cf291-field21.sys")
    assert bad_file_entry(BAD_NAME, bad) == (_sha(bad), BAD_NAME)
    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(BAD_NAME, bad),
                                                  (b"x", "C-00000291-00000000-00000033.sys"),
                                                  ("AB" * 32, "other.sys")])
    assert medium.stat().st_size <= 4 << 20
    assert _debugfs(medium, "cat /recover.sh").encode() == SAMPLE_SCRIPT.read_bytes()
    assert _debugfs_mode(medium, "/recover.sh") == 0o755
    assert _debugfs(medium, "cat /bad-files.txt") == (
        f"{_sha(bad)}  {BAD_NAME}\n{_sha(b'x')}  C-00000291-00000000-00000033.sys\n"
        f"{'ab' * 32}  other.sys\n")
    # The listing is what sha256sum -c reads.
    check = tmp_path / "check"
    check.mkdir()
    (check / BAD_NAME).write_bytes(bad)
    (check / "C-00000291-00000000-00000033.sys").write_bytes(b"x")
    (check / "list").write_text(_debugfs(medium, "cat /bad-files.txt").splitlines()[0] + "\n"
                                + _debugfs(medium, "cat /bad-files.txt").splitlines()[1] + "\n")
    sha256sum = require_tool("sha256sum", "apt-get install coreutils")
    subprocess.run([sha256sum, "-c", "--quiet", "list"], cwd=check, check=True)

    # Script bytes; rebuilding in place replaces the image.
    build_recovery_medium(medium, NOTHING_SCRIPT, [])
    assert _debugfs(medium, "cat /recover.sh").encode() == NOTHING_SCRIPT
    assert _debugfs_mode(medium, "/recover.sh") == 0o755
    assert _debugfs(medium, "cat /bad-files.txt") == ""


def test_medium_errors(tmp_path: Path) -> None:
    require_tool("mke2fs", SETUP_FIX)
    medium = tmp_path / "medium.img"
    missing = tmp_path / "no-such-script.sh"
    with pytest.raises(RecoveryMediumError,
                       match=re.escape(str(missing)) + " does not exist") as info:
        build_recovery_medium(medium, missing, [])
    assert isinstance(info.value, DataDiskError) and isinstance(info.value, HarnessError)
    with pytest.raises(RecoveryMediumError, match=re.escape(str(missing))):
        build_recovery_medium(medium, str(missing), [])
    with pytest.raises(RecoveryMediumError, match="is a directory"):
        build_recovery_medium(medium, tmp_path, [])
    with pytest.raises(RecoveryMediumError, match=re.escape(str(tmp_path)) + " is a directory"):
        build_recovery_medium(tmp_path, NOTHING_SCRIPT, [])
    with pytest.raises(RecoveryMediumError, match="does not exist"):
        build_recovery_medium(tmp_path / "nodir" / "m.img", NOTHING_SCRIPT, [])
    digest = _sha(b"x")
    for bad_files, pattern in (
            ([(digest, "a/b.sys")], "cannot be listed"),
            ([(digest, "..")], "cannot be listed"),
            ([(digest, "new\nline.sys")], "cannot be listed"),
            ([(digest, " padded.sys")], "cannot be listed"),
            ([("abc", "C-1.sys")], "64 hex digits"),
            ([("g" * 64, "C-1.sys")], "64 hex digits"),
            ([("C-1.sys", digest)], r"looks like \(name, sha256\)"),
            ([("C-1.sys",)], "not a \\(sha256 hex, file name\\) pair"),
            ("C-1.sys", "sequence of"),
    ):
        with pytest.raises(RecoveryMediumError, match=re.escape(str(medium)) + ".*" + pattern):
            build_recovery_medium(medium, NOTHING_SCRIPT, bad_files)  # type: ignore[arg-type]
    assert not medium.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".recovery-")]


# ------------------------------------------------------------------ cache

def test_cache_key_covers_the_recovery_init(tmp_path: Path) -> None:
    _require_build_tools()
    cache = tmp_path / "cache"
    try:
        first = build_reference_guest(cache, progress=lambda _: None)
    except GuestBuildError as exc:
        skip_or_fail(f"cannot build the reference guest: {exc}")
    assert first.recovery_initrd is not None and first.recovery_initrd.is_relative_to(cache)

    # Same content elsewhere: a hit.  Changed content: a new key, both images rebuilt.
    script = tmp_path / "recovery-init.sh"
    shutil.copyfile(RECOVERY_INIT, script)
    lines: list[str] = []
    assert build_reference_guest(cache, progress=lines.append, recovery_init_script=script) == first
    assert lines[-1].startswith("guest: cached"), lines
    script.write_text(script.read_text() + "# changed\n")
    lines.clear()
    changed = build_reference_guest(cache, progress=lines.append, recovery_init_script=script)
    assert any(l.startswith("guest: built") for l in lines), lines
    assert changed.key != first.key and changed.recovery_initrd != first.recovery_initrd
    assert _newc_entries(changed.recovery_initrd)["init"][1].endswith(b"# changed\n")
    assert _newc_entries(changed.initrd)["init"][1] == linux_ref.INIT_SCRIPT.read_bytes()
    # Back to the default: the first entry again, from the stamp.
    lines.clear()
    t0 = time.perf_counter()
    assert build_reference_guest(cache, progress=lines.append) == first
    assert lines[-1].startswith("guest: cached") and time.perf_counter() - t0 < 0.25

    # An entry whose recovery image went missing is rebuilt, not returned half-made.
    first.recovery_initrd.unlink()
    lines.clear()
    again = build_reference_guest(cache, progress=lines.append)
    assert any(l.startswith("guest: built") for l in lines), lines
    assert again.key == first.key and again.recovery_initrd.is_file()

    with pytest.raises(GuestBuildError, match=re.escape(str(tmp_path / "nope.sh"))):
        build_reference_guest(cache, progress=lambda _: None,
                              recovery_init_script=tmp_path / "nope.sh")


@pytest.mark.vm
@pytest.mark.parametrize("second_disk", ["none", "not-a-medium"])
def test_safe_mode_without_a_medium_boots_as_before(boot, guest: ReferenceGuest, tmp_path: Path,
                                                    second_disk: str) -> None:
    disk = tmp_path / "disk.img"
    files = cf291_disk(disk)
    other = None
    if second_disk == "not-a-medium":  # an ext4 disk without recover.sh
        other = tmp_path / "other.img"
        build_data_disk(other, {"x.sys": b"x"})
    vm = boot(guest.initrd, guest.cmdline("vulnerable", mode="safe", halt=True), disk, other)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert vm.wait_exit(30) == 0
    if other is None:
        assert_in_order(vm, r"HARNESS-SENSOR-SKIPPED reason=safe-mode",
                        r"HARNESS-BOOT-COMPLETE mode=safe sensor=vulnerable")
        assert "HARNESS-RECOVERY" not in vm.text
    else:
        assert_in_order(vm, r"HARNESS-SENSOR-SKIPPED reason=safe-mode",
                        r"HARNESS-RECOVERY-ERROR path=safe-mode reason=no-recovery-script "
                        r"device=/dev/vdb", r"HARNESS-BOOT-COMPLETE mode=safe sensor=vulnerable")
        assert "HARNESS-RECOVERY-START" not in vm.text
    assert read_content_dir(disk) == files
    report(f"safe mode, second disk: {second_disk}", "HARNESS-BOOT-COMPLETE", t_complete)
