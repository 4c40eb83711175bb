"""The Linux reference guest's constants and `ReferenceGuest`, the built guest a VM boots.

The bottom of the reference-guest build (ref_cache, ref_inputs, ref_build, linux_ref import
it; it imports none of them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.paths import DRIVERS, DRIVERS_BUILD, VM_TEMPLATES

# Bump when the layout of the image or of the cache changes: every cached guest is rebuilt.
BUILDER_VERSION = "5"  # 2: the recovery initramfs; 3: lib.sh shared by both inits; 4: mounts in lib.sh;
#                        5: qemu-ga and sftp-server

BASE_CMDLINE = ("console=ttyS0,115200", "loglevel=6", "panic=1", "oops=panic")
SENSOR_BUILDS = ("vulnerable", "hardened")
VENDOR_DRIVER = "driver"  # harness.sensor=driver: the vendor's module on the data disk
MODES = ("normal", "safe")
# Loaded by /init in this order (each after its dependencies).  crc32c-intel comes in
# as ext4's soft dependency; it needs SSE4.2, so it fails (quietly) on -cpu qemu64.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng",
           "ext4", "pvpanic_mmio", "pvpanic_pci")
# The recovery environment: data disk and recovery medium (virtio-blk, ext4), and pvpanic so
# that a crash there is reported like one in a normal boot.
RECOVERY_MODULES = ("virtio_pci", "virtio_blk", "ext4", "pvpanic_mmio", "pvpanic_pci")
# Applets /init relies on; checked at build time.  timeout, setsid, cat: running the
# recovery script; sha256sum, rm: what the sample recovery script needs.
REQUIRED_APPLETS = ("sh", "mount", "insmod", "usleep", "ip", "setsid", "cttyhack", "poweroff",
                    "grep", "cp", "chmod", "chown", "mkdir", "sync", "umount", "tail", "tr",
                    "timeout", "cat", "sha256sum", "rm", "ln",
                    "dd", "head", "blockdev")  # the snapshot point (lib.sh snapshot_point)
RECOVERY_APPLETS = ("sh", "mount", "insmod", "usleep", "setsid", "timeout", "poweroff", "grep",
                    "mkdir", "sync", "umount", "cat", "sha256sum", "rm")
RECOVERY_TIMEOUT = 120  # seconds the recovery script may run (knob harness.recovery_timeout=N)

INIT_SCRIPT = VM_TEMPLATES / "linux" / "init.sh"
RECOVERY_INIT_SCRIPT = VM_TEMPLATES / "linux" / "recovery-init.sh"
INIT_LIB = VM_TEMPLATES / "linux" / "lib.sh"  # sourced by both inits
LINUX_DRIVER_DIR = DRIVERS / "linux"
SENSOR_SOURCES = (
    LINUX_DRIVER_DIR / "harness_sensor.c",
    LINUX_DRIVER_DIR / "Kbuild",
    LINUX_DRIVER_DIR / "Makefile",
    DRIVERS / "common" / "chf_interp.c",
    DRIVERS / "common" / "chf_interp.h",
)
BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
QEMU_GA = Path("/usr/sbin/qemu-ga")  # Debian's qemu-guest-agent
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")  # Debian's openssh-sftp-server
TRANSPORT_FIX = "run make setup (or apt-get install qemu-guest-agent openssh-sftp-server)"
DPKG_STATUS = Path("/var/lib/dpkg/status")
LD_SO_CACHE = Path("/etc/ld.so.cache")

GUEST_SENSOR_DIR = "/lib/harness/sensor"
GUEST_HOST_KEY = "/etc/dropbear/dropbear_ed25519_host_key"
GUEST_QEMU_GA = "/usr/sbin/qemu-ga"
GUEST_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
GUEST_MODULE_LIST = "/etc/harness/modules"

Progress = Callable[[str], None]


def sensor_module(build: str) -> Path:
    """drivers/build/linux/<build>/harness_sensor.ko"""
    return DRIVERS_BUILD / "linux" / build / "harness_sensor.ko"


@dataclass(frozen=True)
class ReferenceGuest:
    """A built reference guest: read-only files shared by every VM of a run."""

    kernel: Path  # ELF vmlinux (PVH entry); -kernel / <kernel>
    initrd: Path  # gzip'd newc cpio; -initrd / <initrd>
    kernel_version: str  # e.g. 6.1.0-56-amd64
    host_key_pub: Path  # the guest's dropbear host key, OpenSSH public key format
    key: str  # hash of every input: the cache key
    host_key_fingerprint: str = ""  # SHA256:... as ssh-keygen -l prints it
    pvh: bool = True  # False: `kernel` is the bzImage (no PVH note found), boots slower
    modules: tuple[str, ...] = field(default=())  # kernel modules in the initramfs
    # The recovery environment's initramfs (no sensor; /init = recovery-init.sh): boot it
    # on `kernel` with recovery_cmdline(), the data disk as vda, the recovery medium as vdb.
    # Always set on a built guest; None only on a hand-made ReferenceGuest.
    recovery_initrd: Path | None = None

    def cmdline(self, sensor: str = "vulnerable", mode: str = "normal", net: bool = False,
                extra: str = "", *, halt: bool = False) -> str:
        """Kernel command line for one boot.

        sensor: which harness_sensor.ko /init loads, or "driver": a vendor's module installed on
        the data disk (harness/driver/, see datadisk.py); mode "safe" skips the sensor;
        net: static eth0 + dropbear (needs a virtio-net NIC with QEMU user networking
        and harness/authorized_keys on the data disk); halt: power off once booted.
        mode "recovery": the line for `recovery_initrd`, i.e. recovery_cmdline(extra)
        (sensor, net and halt do not apply: no sensor, no network, it always powers off);
        a ReferenceGuest without a recovery_initrd raises ValueError for it.
        """
        if sensor not in (*SENSOR_BUILDS, VENDOR_DRIVER):
            raise ValueError(f"sensor must be one of {', '.join(SENSOR_BUILDS)} or {VENDOR_DRIVER!r}, not {sensor!r}")
        if mode == "recovery":
            if self.recovery_initrd is None:
                raise ValueError("mode 'recovery' boots the recovery initramfs, and this "
                                 "ReferenceGuest has none (recovery_initrd is None): use a guest "
                                 "from build_reference_guest()")
            return self.recovery_cmdline(extra)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, recovery, not {mode!r}")
        words = [*BASE_CMDLINE, f"harness.sensor={sensor}"]
        if mode == "safe":
            words.append("harness.safemode=1")
        if net:
            words.append("harness.net=1")
        if halt:
            words.append("harness.halt=1")
        if extra.strip():
            words.append(extra.strip())
        return " ".join(words)

    def recovery_cmdline(self, extra: str = "", *, timeout: int | None = None) -> str:
        """Kernel command line for a boot of the recovery environment (`recovery_initrd`).

        `console=ttyS0,115200 loglevel=6 panic=1 oops=panic harness.role=recovery`; there is no
        sensor to choose.  timeout: seconds the recovery script may run before it is killed
        (default RECOVERY_TIMEOUT, 120).  cmdline(..., mode="safe", extra=
        "harness.recovery_timeout=N") sets the same bound for the safe-mode path.
        """
        words = [*BASE_CMDLINE, "harness.role=recovery"]
        if timeout is not None:
            words.append(_timeout_knob(timeout))
        if extra.strip():
            words.append(extra.strip())
        return " ".join(words)

    def host_key(self) -> tuple[str, str]:
        """(key type, base64 blob) of the guest's host key, e.g. ("ssh-ed25519", "AAAA...")."""
        keytype, blob = self.host_key_pub.read_text().split()[:2]
        return keytype, blob

    def known_hosts_line(self, host: str = "127.0.0.1", port: int = 22) -> str:
        """A known_hosts line pinning the guest's host key at host:port."""
        keytype, blob = self.host_key()
        name = host if port == 22 else f"[{host}]:{port}"
        return f"{name} {keytype} {blob}"


def _timeout_knob(timeout: int) -> str:
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout must be a whole number of seconds >= 1, not {timeout!r}")
    return f"harness.recovery_timeout={timeout}"
