"""The Linux reference guest: image build, cache, data disk, and real boots under QEMU (TCG).

The VM tests boot the image itself with plain qemu-system-x86_64 (no libvirt):
direct kernel boot of the PVH vmlinux, the initramfs, a per-test ext4 data disk.
They skip without qemu-system-x86_64 unless CI=true.  Boot times to
HARNESS-BOOT-COMPLETE are printed (run with -s to see them), not asserted.
"""

from __future__ import annotations

import dataclasses

import base64
import gzip
import io
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.guest import (
    DataDiskError,
    GuestBuildError,
    ReferenceGuest,
    build_data_disk,
    build_reference_guest,
    cached_reference_guest,
    read_content_dir,
)
from harness.guest import linux_ref
from harness.testing import skip_or_fail

from .conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "content"
GOOD_NAME = "C-00000291-00000000-00000031.sys"
BAD_NAME = "C-00000291-00000000-00000032.sys"
SETUP_FIX = "apt-get install busybox-static dropbear-bin kmod cpio e2fsprogs xz-utils linux-image-amd64 linux-headers-amd64 (or make setup)"
QEMU_FIX = "apt-get install qemu-system-x86 (or make setup)"
BOOT_TIMEOUT = 60.0
BOOT_TIMES: dict[str, float] = {}



def _require_build_tools() -> None:
    for tool in ("busybox", "dropbearkey", "xz", "modprobe", "make", "mke2fs", "debugfs"):
        require_tool(tool, SETUP_FIX)


@pytest.fixture(scope="session")
def guest() -> ReferenceGuest:
    """The guest from the default cache (built on the first run, a cache hit afterwards)."""
    _require_build_tools()
    lines: list[str] = []
    start = time.perf_counter()
    try:
        built = build_reference_guest(progress=lines.append)
    except GuestBuildError as exc:
        skip_or_fail(f"cannot build the reference guest: {exc}")
    print(f"\n[guest] {time.perf_counter() - start:.3f} s: " + " | ".join(lines))
    return built


# ------------------------------------------------------------------ QEMU runner

class Vm:
    """qemu-system-x86_64 with the serial console on stdout, read by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.start = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._done = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
            with self._cond:
                self.lines.append((time.monotonic() - self.start, line))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines[-n:])

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT) -> tuple[float, str]:
        """(seconds since start, line) of the first line matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = 0
        with self._cond:
            while True:
                for t, line in self.lines[index:]:
                    if regex.search(line):
                        return t, line
                index = len(self.lines)
                left = deadline - time.monotonic()
                if self._done or left <= 0:
                    why = "QEMU exited" if self._done else f"no match in {timeout:.0f} s"
                    raise AssertionError(f"{why} waiting for /{pattern}/; console tail:\n"
                                         + "\n".join(l for _, l in self.lines[-40:]))
                self._cond.wait(min(left, 0.5))

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still running after {timeout:.0f} s; console tail:\n"
                                 + self.tail()) from None

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


def qemu_argv(guest: ReferenceGuest, cmdline: str, disk: Path | None,
              extra: list[str] | None = None) -> list[str]:
    qemu = require_tool("qemu-system-x86_64", QEMU_FIX)
    argv = [qemu, "-accel", "tcg", "-M", "pc", "-cpu", "qemu64", "-m", "256", "-nographic",
            "-no-reboot", "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", cmdline, "-device", "pvpanic"]
    if disk is not None:
        argv += ["-drive", f"file={disk},format=raw,if=virtio"]
    return argv + (extra or [])


@pytest.fixture
def boot(guest: ReferenceGuest) -> Iterator:
    vms: list[Vm] = []

    def start(cmdline: str, disk: Path | None, extra: list[str] | None = None) -> Vm:
        vm = Vm(qemu_argv(guest, cmdline, disk, extra))
        vms.append(vm)
        return vm

    yield start
    for vm in vms:
        vm.close()


def assert_in_order(vm: Vm, *patterns: str) -> list[float]:
    """Each pattern matches a line after the previous one's; returns the times."""
    lines = vm.text.splitlines()
    index, times = 0, []
    for pattern in patterns:
        regex = re.compile(pattern)
        for i in range(index, len(lines)):
            if regex.search(lines[i]):
                index = i + 1
                times.append(vm.lines[i][0])
                break
        else:
            raise AssertionError(f"/{pattern}/ not found after line {index}; console:\n"
                                 + "\n".join(lines[-60:]))
    return times


def report(name: str, seconds: float) -> None:
    BOOT_TIMES[name] = seconds
    print(f"\n[boot] {name}: HARNESS-BOOT-COMPLETE after {seconds:.2f} s (from QEMU start)")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# ------------------------------------------------------------------ VM tests

@pytest.mark.vm
def test_good_file_vulnerable_boots_to_complete(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {GOOD_NAME: fixture_bytes("good.sys")})
    vm = boot(guest.cmdline("vulnerable", halt=True), disk)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert vm.wait_exit(30) == 0  # harness.halt=1: poweroff -f, QEMU exits by itself
    assert_in_order(vm, r"HARNESS-BOOT-START mode=normal sensor=vulnerable",
                    re.escape(f"harness_sensor: {GOOD_NAME}: loaded ("),
                    r"HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0",
                    r"HARNESS-BOOT-COMPLETE mode=normal sensor=vulnerable",
                    r"HARNESS-HALT", r"reboot: Power down")
    assert "Oops" not in vm.text and "Kernel panic" not in vm.text
    report("good file, vulnerable (halt)", t_complete)


@pytest.mark.vm
def test_cf291_file_vulnerable_oops_and_panic(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {BAD_NAME: fixture_bytes("cf291-field21.sys")})
    vm = boot(guest.cmdline("vulnerable"), disk)
    t_panic, _ = vm.wait_for(r"Kernel panic")
    vm.wait_exit(30)  # -no-reboot: the panic=1 reboot (or the pvpanic event) ends QEMU
    assert_in_order(vm, r"HARNESS-BOOT-START mode=normal sensor=vulnerable",
                    r"Oops", r"RIP: .*chf_match_criterion", r"Kernel panic")
    assert "HARNESS-BOOT-COMPLETE" not in vm.text
    assert "HARNESS-SENSOR-LOADED" not in vm.text
    print(f"\n[boot] cf291 vulnerable: Kernel panic after {t_panic:.2f} s")


@pytest.mark.vm
def test_cf291_file_safe_mode_skips_the_sensor(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {BAD_NAME: fixture_bytes("cf291-field21.sys")})
    vm = boot(guest.cmdline("vulnerable", mode="safe"), disk)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert_in_order(vm, r"HARNESS-BOOT-START mode=safe sensor=vulnerable",
                    r"HARNESS-SENSOR-SKIPPED reason=safe-mode",
                    r"HARNESS-BOOT-COMPLETE mode=safe")
    assert "Oops" not in vm.text and "harness_sensor:" not in vm.text
    report("cf291 file, safe mode", t_complete)


@pytest.mark.vm
def test_cf291_file_hardened_rejects_and_console_shell_works(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {GOOD_NAME: fixture_bytes("good.sys"),
                           BAD_NAME: fixture_bytes("cf291-field21.sys")})
    vm = boot(guest.cmdline("hardened"), disk)
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    assert_in_order(vm, r"HARNESS-BOOT-START mode=normal sensor=hardened",
                    re.escape(f"harness_sensor: {GOOD_NAME}: loaded ("),
                    re.escape(f"harness_sensor: {BAD_NAME}: rejected: ") + r".*\[field-count\]",
                    r"HARNESS-SENSOR-LOADED build=hardened files=2 loaded=1 rejected=1",
                    r"HARNESS-BOOT-COMPLETE mode=normal sensor=hardened")
    assert "Oops" not in vm.text
    report("good + cf291 files, hardened", t_complete)
    # The console stays usable: a shell on ttyS0.
    vm.wait_for(r"BusyBox .* built-in shell", timeout=20)
    vm.send("echo SHELL-$((6 * 7)); cat /sys/module/harness_sensor/parameters/build\n")
    vm.wait_for(r"^SHELL-42$", timeout=20)
    vm.wait_for(r"^hardened$", timeout=20)


@pytest.mark.vm
def test_missing_data_disk_is_reported(boot, guest: ReferenceGuest) -> None:
    vm = boot(guest.cmdline("vulnerable", halt=True), None)
    vm.wait_for(r"HARNESS-BOOT-ERROR reason=no-data-disk")
    assert vm.wait_exit(30) == 0
    assert "HARNESS-BOOT-COMPLETE" not in vm.text


@pytest.mark.vm
def test_hang_knob_goes_silent_after_boot_start(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {GOOD_NAME: fixture_bytes("good.sys")})
    vm = boot(guest.cmdline("vulnerable", extra="harness.hang=1"), disk)
    vm.wait_for(r"HARNESS-BOOT-START")
    count = len(vm.lines)
    time.sleep(4)
    assert vm.proc.poll() is None
    assert len(vm.lines) == count, "the console printed more after HARNESS-BOOT-START:\n" + vm.tail()
    assert "harness_sensor" not in vm.text and "HARNESS-BOOT-COMPLETE" not in vm.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_key() -> tuple[object, str]:
    """A per-test ed25519 key: (paramiko key, authorized_keys line)."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), public + " harness-test"


def _exec(client, command: str) -> tuple[int, str]:
    stdin, stdout, stderr = client.exec_command(command, timeout=20)
    stdin.close()
    out = stdout.read().decode()
    status = stdout.channel.recv_exit_status()
    stdout.channel.close()
    return status, out + stderr.read().decode()


@pytest.mark.vm
def test_net_ssh_login_with_pinned_host_key(boot, guest: ReferenceGuest, tmp_path: Path) -> None:
    import paramiko
    pkey, authorized = _client_key()
    disk = tmp_path / "disk.img"
    build_data_disk(disk, {GOOD_NAME: fixture_bytes("good.sys")}, authorized_keys=authorized)
    port = _free_port()
    vm = boot(guest.cmdline("vulnerable", net=True), disk,
              ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
               "-device", "virtio-net-pci,netdev=n0"])
    t_complete, _ = vm.wait_for(r"HARNESS-BOOT-COMPLETE")
    t_ready, _ = vm.wait_for(r"HARNESS-SSH-READY")
    assert_in_order(vm, r"HARNESS-SENSOR-LOADED build=vulnerable", r"HARNESS-BOOT-COMPLETE",
                    r"HARNESS-SSH-READY addr=10\.0\.2\.15 port=22")
    report("good file, vulnerable, net", t_complete)
    print(f"[boot] HARNESS-SSH-READY after {t_ready:.2f} s")

    keytype, blob = guest.host_key()
    assert keytype == "ssh-ed25519"
    host_key = paramiko.Ed25519Key(data=base64.b64decode(blob))

    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{port}", keytype, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    t0 = time.monotonic()
    client.connect("127.0.0.1", port=port, username="root", pkey=pkey, look_for_keys=False,
                   allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
    try:
        print(f"[boot] SSH login {time.monotonic() - t0:.2f} s after HARNESS-SSH-READY was seen")
        status, out = _exec(client, "cat /sys/module/harness_sensor/parameters/build; ls /data/content")
        assert status == 0, out
        assert out.split() == ["vulnerable", GOOD_NAME]
        # A change a recovery step would make; synced, then the VM is killed without unmounting.
        status, out = _exec(client, f"echo recovered > /data/content/NOTE.txt && "
                                    f"rm /data/content/{GOOD_NAME} && sync")
        assert status == 0, out
    finally:
        client.close()

    # A different pinned key is refused: the pin is what protects the login.
    other = paramiko.SSHClient()
    other.get_host_keys().add(f"[127.0.0.1]:{port}", keytype,
                              paramiko.Ed25519Key.from_private_key(io.StringIO(
                                  _other_host_key_pem())))
    other.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        other.connect("127.0.0.1", port=port, username="root", pkey=pkey, look_for_keys=False,
                      allow_agent=False, timeout=20, banner_timeout=20)
    other.close()

    vm.close()  # SIGTERM: the guest never unmounts /data
    assert read_content_dir(disk) == {"NOTE.txt": b"recovered\n"}


def _other_host_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


# ------------------------------------------------------------------ image tests

def _newc_entries(initrd: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a gzip'd newc archive."""
    raw = gzip.decompress(initrd.read_bytes())
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert raw[pos:pos + 6] == b"070701", f"bad newc header at {pos}"
        fields = [int(raw[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = raw[pos:pos + namesize - 1].decode()
        pos = (pos + namesize + 3) & ~3
        data = raw[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data)


def test_guest_image_contents(guest: ReferenceGuest) -> None:
    assert guest.kernel.read_bytes()[:4] == b"\x7fELF"
    assert guest.pvh, "the vmlinux should carry the PVH entry note"
    entries = _newc_entries(guest.initrd)
    for name in ("init", "bin/busybox", "usr/sbin/dropbear", "lib64/ld-linux-x86-64.so.2",
                 "etc/dropbear/dropbear_ed25519_host_key", "etc/passwd", "etc/harness/modules",
                 "lib/harness/sensor/vulnerable/harness_sensor.ko",
                 "lib/harness/sensor/hardened/harness_sensor.ko", "dev/console"):
        assert name in entries, f"{name} missing from the initramfs"
    assert entries["init"][1] == linux_ref.INIT_SCRIPT.read_bytes()
    # The transports: qemu-ga (with its shared libraries) and sftp-server where dropbear execs it.
    assert entries["usr/sbin/qemu-ga"][1] == linux_ref.QEMU_GA.read_bytes()
    assert entries["usr/lib/openssh/sftp-server"][1] == linux_ref.SFTP_SERVER.read_bytes()
    sftp_path = linux_ref._sftp_server_path(linux_ref.DROPBEAR)
    if sftp_path != "/usr/lib/openssh/sftp-server":
        assert entries[sftp_path.lstrip("/")][1] == b"/usr/lib/openssh/sftp-server"  # symlink
    for lib, _host in linux_ref._shared_libraries(linux_ref.QEMU_GA, "qemu-guest-agent"):
        assert lib.lstrip("/") in entries, f"{lib} (needed by qemu-ga) missing from the initramfs"
    assert entries["init"][0] & 0o111
    assert entries["bin/sh"][1] == b"/bin/busybox"  # applet symlink
    for build in ("vulnerable", "hardened"):
        assert entries[f"lib/harness/sensor/{build}/harness_sensor.ko"][1] == \
            linux_ref.sensor_module(build).read_bytes()
    listed = entries["etc/harness/modules"][1].decode().split()
    for module in listed:
        assert module.lstrip("/") in entries and module.endswith(".ko")
    names = [Path(m).name for m in listed]
    for needed in ("virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko", "virtio_console.ko",
                   "ext4.ko", "jbd2.ko", "pvpanic.ko", "pvpanic-mmio.ko"):
        assert needed in names
    assert names.index("virtio.ko") < names.index("virtio_blk.ko") < names.index("ext4.ko") \
        or names.index("jbd2.ko") < names.index("ext4.ko")
    pub = guest.host_key_pub.read_text().split()
    assert pub[0] == "ssh-ed25519" and guest.host_key_fingerprint.startswith("SHA256:")
    assert (guest.host_key_pub.parent / "host_key.fingerprint").read_text().strip() == \
        guest.host_key_fingerprint
    print(f"\n[guest] initramfs {guest.initrd.stat().st_size / 1e6:.2f} MB, "
          f"{len(guest.modules)} modules, kernel {guest.kernel.stat().st_size / 1e6:.1f} MB")


def test_cmdline() -> None:
    g = ReferenceGuest(kernel=Path("k"), initrd=Path("i"), kernel_version="v",
                       host_key_pub=Path("p"), key="x")
    base = "console=ttyS0,115200 loglevel=6 panic=1 oops=panic"
    assert g.cmdline() == base + " harness.sensor=vulnerable"
    assert g.cmdline("hardened", "safe", True, "foo=1") == \
        base + " harness.sensor=hardened harness.safemode=1 harness.net=1 foo=1"
    assert g.cmdline(halt=True).endswith(" harness.halt=1")
    assert "panic_on_oops" not in g.cmdline()
    with pytest.raises(ValueError):
        g.cmdline("bogus")
    with pytest.raises(ValueError):  # a hand-made guest without a recovery initramfs
        g.cmdline(mode="recovery")
    with_recovery = dataclasses.replace(g, recovery_initrd=Path("r"))
    assert with_recovery.cmdline(mode="recovery") == base + " harness.role=recovery"


def test_init_script_parses() -> None:
    busybox = require_tool("busybox", SETUP_FIX)
    proc = subprocess.run([busybox, "sh", "-n", str(linux_ref.INIT_SCRIPT)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ cache tests

def test_cache_hit_then_rebuild_on_changed_input(tmp_path: Path) -> None:
    _require_build_tools()
    cache = tmp_path / "cache"
    assert cached_reference_guest(cache) is None

    lines: list[str] = []
    t0 = time.perf_counter()
    try:
        first = build_reference_guest(cache, progress=lines.append)
    except GuestBuildError as exc:
        skip_or_fail(f"cannot build the reference guest: {exc}")
    cold = time.perf_counter() - t0
    assert any(l.startswith("guest: built in") for l in lines), lines
    assert first.initrd.is_relative_to(cache) and first.kernel.is_relative_to(cache)
    assert cached_reference_guest(cache) == first

    lines.clear()
    t0 = time.perf_counter()
    second = build_reference_guest(cache, progress=lines.append)
    hit = time.perf_counter() - t0
    assert second == first
    assert len(lines) == 1 and lines[0].startswith("guest: cached"), lines
    assert hit < 0.25, f"a cache hit took {hit:.3f} s"

    # The key is the inputs' content: the same init script at another path is a hit,
    # and so is the same content with a new mtime (only the hashes are recomputed).
    init = tmp_path / "init.sh"
    shutil.copyfile(linux_ref.INIT_SCRIPT, init)
    lines.clear()
    assert build_reference_guest(cache, progress=lines.append, init_script=init) == first
    assert lines[-1].startswith("guest: cached"), lines
    os.utime(init, (time.time() + 5, time.time() + 5))
    lines.clear()
    t0 = time.perf_counter()
    assert build_reference_guest(cache, progress=lines.append, init_script=init) == first
    rehash = time.perf_counter() - t0
    assert lines[-1].startswith("guest: cached"), lines

    # A changed input: a new key, a new initramfs; the unpacked kernel is reused.
    init.write_text(init.read_text() + "# changed\n")
    lines.clear()
    t0 = time.perf_counter()
    changed = build_reference_guest(cache, progress=lines.append, init_script=init)
    rebuild = time.perf_counter() - t0
    assert changed.key != first.key and changed.initrd != first.initrd
    assert changed.kernel == first.kernel
    assert any("reusing" in l for l in lines) and any(l.startswith("guest: built") for l in lines)
    assert _newc_entries(changed.initrd)["init"][1].endswith(b"# changed\n")
    assert cached_reference_guest(cache) == first  # the default inputs are still cached

    # force: rebuilt, same key, a fresh host key.
    lines.clear()
    forced = build_reference_guest(cache, progress=lines.append, force=True)
    assert any(l.startswith("guest: built") for l in lines), lines
    assert forced.key == first.key and forced.host_key_fingerprint != first.host_key_fingerprint
    print(f"\n[cache] cold {cold:.2f} s, hit {hit * 1000:.1f} ms, touched {rehash * 1000:.0f} ms, "
          f"changed init {rebuild:.2f} s")


def test_missing_kernel_is_a_typed_error(tmp_path: Path) -> None:
    _require_build_tools()
    missing = tmp_path / "vmlinuz-9.9.9-missing"
    with pytest.raises(GuestBuildError, match=re.escape(str(missing))) as info:
        build_reference_guest(tmp_path / "cache", progress=lambda _: None, kernel_image=missing)
    assert "linux-image-amd64" in str(info.value)


def test_missing_or_dynamic_busybox_is_a_typed_error(tmp_path: Path) -> None:
    _require_build_tools()
    with pytest.raises(GuestBuildError, match="busybox-static is not installed.*make setup"):
        build_reference_guest(tmp_path / "cache", progress=lambda _: None,
                              busybox=tmp_path / "busybox")
    with pytest.raises(GuestBuildError, match="busybox-static"):
        build_reference_guest(tmp_path / "cache", progress=lambda _: None, busybox=Path("/bin/ls"))


def test_missing_dropbear_is_a_typed_error(tmp_path: Path) -> None:
    _require_build_tools()
    with pytest.raises(GuestBuildError, match="dropbear-bin is not installed"):
        build_reference_guest(tmp_path / "cache", progress=lambda _: None,
                              dropbear=tmp_path / "dropbear")


# ------------------------------------------------------------------ data disk tests

def _debugfs_cat(image: Path, path: str) -> bytes:
    debugfs = require_tool("debugfs", SETUP_FIX)
    return subprocess.run([debugfs, "-R", f"cat {path}", str(image)], capture_output=True,
                          check=True).stdout


def test_data_disk_round_trip(tmp_path: Path) -> None:
    require_tool("mke2fs", SETUP_FIX)
    files = {GOOD_NAME: fixture_bytes("good.sys"), BAD_NAME: fixture_bytes("cf291-field21.sys"),
             "empty.sys": b"", "with space.txt": bytes(range(256)) * 3}
    disk = tmp_path / "disk.img"
    build_data_disk(disk, files, authorized_keys="ssh-ed25519 AAAAtest harness")
    assert disk.stat().st_size == 16 << 20
    assert read_content_dir(disk) == files
    assert _debugfs_cat(disk, "/harness/authorized_keys") == b"ssh-ed25519 AAAAtest harness\n"
    # Rebuilding in place replaces the image.
    build_data_disk(disk, {"only.sys": b"x"})
    assert read_content_dir(disk) == {"only.sys": b"x"}
    assert _debugfs_cat(disk, "/harness/authorized_keys") == b""


def test_data_disk_grows_for_big_files(tmp_path: Path) -> None:
    require_tool("mke2fs", SETUP_FIX)
    big = os.urandom(20 << 20)
    disk = tmp_path / "big.img"
    build_data_disk(disk, {"big.sys": big})
    assert disk.stat().st_size > 20 << 20
    assert read_content_dir(disk)["big.sys"] == big


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0"])
def test_data_disk_rejects_bad_names(tmp_path: Path, name: str) -> None:
    disk = tmp_path / "disk.img"
    with pytest.raises(DataDiskError, match=re.escape(str(disk))):
        build_data_disk(disk, {name: b"x"})
    assert not disk.exists()


def test_read_content_dir_errors(tmp_path: Path) -> None:
    require_tool("mke2fs", SETUP_FIX)
    missing = tmp_path / "missing.img"
    with pytest.raises(DataDiskError, match=re.escape(str(missing))):
        read_content_dir(missing)
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(DataDiskError, match=re.escape(str(junk)) + ".*not an ext4 image"):
        read_content_dir(junk)
    with pytest.raises(DataDiskError, match=re.escape(str(tmp_path))):
        build_data_disk(tmp_path, {"a": b"x"})  # a directory, not an image path
    # An ext4 image without content/: nothing there.
    bare = tmp_path / "bare.img"
    subprocess.run([require_tool("mke2fs", SETUP_FIX), "-q", "-t", "ext4", "-F", str(bare), "8M"],
                   check=True, capture_output=True)
    assert read_content_dir(bare) == {}
