"""The Linux reference guest: Debian's kernel, a busybox initramfs, both sensor builds.

`build_reference_guest()` makes, from Debian packages only:

* the uncompressed ELF vmlinux unpacked from /boot/vmlinuz-<kver> (booted through its
  PVH entry note: no SeaBIOS-side decompression, ~4 s less per boot under TCG);
* a gzip'd newc initramfs: busybox-static with its applet links, the virtio/ext4/pvpanic
  modules and their dependencies, harness_sensor.ko of both builds, dropbear with its
  shared libraries and a host key generated at build time, OpenSSH's sftp-server where
  dropbear looks for it (SFTP), the QEMU guest agent (qemu-ga, started by /init on the
  org.qemu.guest_agent.0 virtio-serial port in normal boots) with its shared libraries,
  and /init (vm-templates/linux/init.sh);
* host_key.pub (OpenSSH format) and host_key.fingerprint beside it, so the harness can
  pin the guest's SSH host key;
* the recovery environment's initramfs (recovery.cpio.gz): busybox, the virtio/ext4/pvpanic
  modules and /init = vm-templates/linux/recovery-init.sh, no sensor module at all.  Booted
  on the same kernel and data disk with `recovery_cmdline()`, it runs the recovery script
  from a recovery medium (harness/guest/recovery.py) and powers off.

Everything goes into a cache directory keyed by a hash of every input; an unchanged
input set returns the cached guest in milliseconds (a stat check of the inputs; the
content hashes are only recomputed when a file's size, mtime or inode changed).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.artifacts import sha256_file
from harness.guest import GuestBuildError
from harness.guest.cpio import Archive
from harness.guest.datadisk import CONTENT_DIR, build_data_disk, read_content_dir
from harness.guest.kernel import (
    elf_interpreter,
    extract_vmlinux,
    KernelModule,
    has_pvh_note,
    modinfo,
    read_module,
    resolve_modules,
)
from harness.paths import DRIVERS, DRIVERS_BUILD, VM_TEMPLATES, cache_dir, driver_tree

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
                    "timeout", "cat", "sha256sum", "rm", "ln")
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
KEEP_ENTRIES = 3  # cached guests kept; older ones are pruned after a build

Progress = Callable[[str], None]

__all__ = ["BUILDER_VERSION", "CONTENT_DIR", "RECOVERY_TIMEOUT", "ReferenceGuest",
           "build_data_disk", "build_reference_guest", "cached_reference_guest",
           "read_content_dir"]


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


# --------------------------------------------------------------------------- helpers

def default_cache_dir() -> Path:
    """$HARNESS_CACHE/guest/linux-ref, else <repo>/build/guest/linux-ref."""
    root = os.environ.get("HARNESS_CACHE")
    base = Path(root) if root else cache_dir()
    return base / "guest" / "linux-ref"


def _stat_sig(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
         if os.access(p := f"{d}/{name}", os.X_OK)), None)


def _fingerprint(blob_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on directory/.lock (flock: released if the process dies)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sensor_stale() -> list[str]:
    """Why the sensor modules must be (re)built: missing or older than a source."""
    newest = max((p.stat().st_mtime_ns for p in SENSOR_SOURCES if p.exists()), default=0)
    reasons = []
    for build in SENSOR_BUILDS:
        ko = sensor_module(build)
        if not ko.exists():
            reasons.append(f"{ko} missing")
        elif ko.stat().st_mtime_ns < newest:
            reasons.append(f"{ko} older than its sources")
    return reasons


def _ensure_sensor_modules(progress: Progress) -> None:
    if not _sensor_stale():
        return
    # One make at a time (parallel harness runs share drivers/build/linux).
    with _locked(DRIVERS_BUILD / "linux"):
        reasons = _sensor_stale()
        if reasons:
            _make_sensor_modules(reasons, progress)


def _make() -> str:
    make = _which("make")
    if make is None:
        raise GuestBuildError("make is not installed (needed for the sensor modules and the guest "
                              "kernel version): run make setup (or apt-get install build-essential)")
    return make


def _make_sensor_modules(reasons: list[str], progress: Progress) -> None:
    progress(f"guest: building the sensor modules ({'; '.join(reasons)}): make -C drivers/linux")
    proc = subprocess.run([_make(), "--no-print-directory", "-C", str(driver_tree() / "linux")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise GuestBuildError(f"building the sensor modules failed (make -C drivers/linux, exit "
                              f"{proc.returncode}):\n{tail}")
    still = _sensor_stale()
    if still:
        raise GuestBuildError(f"make -C drivers/linux succeeded but {'; '.join(still)}")


def _kernel_version() -> str:
    proc = subprocess.run([_make(), "-s", "--no-print-directory", "-C", str(driver_tree() / "linux"),
                           "print-kver"], capture_output=True, text=True, check=False)
    kver = proc.stdout.strip()
    if proc.returncode != 0 or not kver:
        raise GuestBuildError("cannot tell the guest kernel version (make -s -C drivers/linux "
                              f"print-kver): {proc.stderr.strip() or 'no output'}")
    return kver


def _dropbear_libraries(dropbear: Path) -> list[tuple[str, Path]]:
    """(guest path, host file) of each shared library and the loader dropbear needs."""
    return _shared_libraries(dropbear, "dropbear-bin")


def _shared_libraries(binary: Path, package: str) -> list[tuple[str, Path]]:
    """(guest path, host file) of each shared library and the loader `binary` needs
    (`package`: the Debian package to reinstall when one is missing)."""
    interp = elf_interpreter(binary)
    if interp is None:
        return []
    ldd = _which("ldd")
    if ldd is None:
        raise GuestBuildError(f"ldd is not installed (needed to find {binary.name}'s libraries): "
                              "apt-get install libc-bin")
    proc = subprocess.run([ldd, str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestBuildError(f"ldd {binary} failed: {proc.stderr.strip()}")
    libs: list[tuple[str, Path]] = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise GuestBuildError(f"{binary} needs {line.split()[0]}, which is not installed "
                                  f"(reinstall {package}: apt-get install --reinstall {package})")
        if m := re.match(r"\S+ => (/\S+) \(0x[0-9a-f]+\)$", line):
            libs.append((m.group(1), Path(m.group(1))))
        elif m := re.match(r"(/\S+) \(0x[0-9a-f]+\)$", line):
            libs.append((m.group(1), Path(m.group(1))))
    if not any(guest == interp for guest, _ in libs):
        libs.append((interp, Path(interp)))
    return libs


def _merge_libraries(*lists: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """One entry per guest path, in first-seen order."""
    seen: dict[str, Path] = {}
    for libs in lists:
        for guest, host in libs:
            seen.setdefault(guest, host)
    return list(seen.items())


def _sftp_server_path(dropbear: Path) -> str:
    """Where this dropbear build execs the SFTP subsystem from (its compiled-in
    SFTPSERVER_PATH: /usr/lib/sftp-server in Debian's build), read from the binary."""
    found = re.findall(rb"\x00(/[A-Za-z0-9_./-]*sftp-server)\x00", dropbear.read_bytes())
    if not found:
        raise GuestBuildError(f"{dropbear} names no sftp-server path: it was built without SFTP "
                              "support (reinstall Debian's dropbear-bin)")
    return found[0].decode()


@dataclass
class _Inputs:
    """Everything the image is made from, resolved on the host."""

    kernel_version: str
    kernel_image: Path
    busybox: Path
    dropbear: Path
    init_script: Path
    recovery_init_script: Path
    libraries: list[tuple[str, Path]]
    modules: list[KernelModule]
    recovery_modules: list[KernelModule]
    sensors: dict[str, Path]
    discovery: list[Path]  # files that only decide *which* inputs there are
    qemu_ga: Path = QEMU_GA
    sftp_server: Path = SFTP_SERVER
    sftp_guest_path: str = GUEST_SFTP_SERVER  # where dropbear looks for it

    def files(self) -> list[tuple[str, Path]]:
        """(role, host path) of every input whose content goes into the images."""
        out = [("kernel", self.kernel_image), ("busybox", self.busybox),
               ("dropbear", self.dropbear), ("init", self.init_script),
               ("recovery-init", self.recovery_init_script), ("init-lib", INIT_LIB),
               ("qemu-ga", self.qemu_ga), ("sftp-server", self.sftp_server)]
        out += [(f"lib:{guest}", host) for guest, host in self.libraries]
        out += [(f"module:{m.guest_path}", m.host_path) for m in self.modules]
        out += [(f"recovery-module:{m.guest_path}", m.host_path) for m in self.recovery_modules]
        out += [(f"sensor:{b}", p) for b, p in sorted(self.sensors.items())]
        return out


def _resolve_inputs(kernel_version: str | None, kernel_image: Path | None,
                    init_script: Path, busybox: Path, dropbear: Path,
                    recovery_init_script: Path = RECOVERY_INIT_SCRIPT) -> _Inputs:
    kver = kernel_version or _kernel_version()
    image = kernel_image or Path(f"/boot/vmlinuz-{kver}")
    if not image.is_file():
        raise GuestBuildError(f"guest kernel {image} not found: install the guest kernel "
                              f"(apt-get install linux-image-amd64, or run make setup)")
    if not busybox.is_file():
        raise GuestBuildError(f"busybox-static is not installed ({busybox} missing): run make "
                              "setup (or apt-get install busybox-static)")
    if elf_interpreter(busybox) is not None:
        raise GuestBuildError(f"{busybox} is a dynamically linked busybox: the guest needs "
                              "busybox-static (apt-get install busybox-static, or run make setup)")
    if not dropbear.is_file():
        raise GuestBuildError(f"dropbear-bin is not installed ({dropbear} missing): run make "
                              "setup (or apt-get install dropbear-bin)")
    if _which("dropbearkey") is None:
        raise GuestBuildError("dropbearkey is not installed: run make setup "
                              "(or apt-get install dropbear-bin)")
    for tool in (QEMU_GA, SFTP_SERVER):
        if not tool.is_file():
            raise GuestBuildError(f"{tool} is missing (the guest's agent and SFTP transports): "
                                  f"{TRANSPORT_FIX}")
    if not init_script.is_file():
        raise GuestBuildError(f"the guest's init script {init_script} is missing")
    if not recovery_init_script.is_file():
        raise GuestBuildError(f"the recovery environment's init script {recovery_init_script} "
                              "is missing (vm-templates/linux/recovery-init.sh in the repository)")
    sensors: dict[str, Path] = {}
    for build in SENSOR_BUILDS:
        ko = sensor_module(build)
        try:
            vermagic = modinfo(ko.read_bytes()).get("vermagic", "")
        except (OSError, ValueError) as exc:
            raise GuestBuildError(f"sensor module {ko} unusable ({exc}): run make -C drivers/linux")
        if vermagic.split(" ", 1)[0] != kver:
            raise GuestBuildError(
                f"sensor module {ko} is built for {vermagic.split(' ', 1)[0] or '?'}, the guest "
                f"kernel is {kver}: run make -C drivers/linux clean all")
        sensors[build] = ko
    discovery = [Path(f"/lib/modules/{kver}/modules.dep"), LD_SO_CACHE,
                 LINUX_DRIVER_DIR / "Makefile"]
    if kernel_version is None:
        discovery.append(DPKG_STATUS)
    libraries = _merge_libraries(_dropbear_libraries(dropbear),
                                 _shared_libraries(QEMU_GA, "qemu-guest-agent"),
                                 _shared_libraries(SFTP_SERVER, "openssh-sftp-server"))
    return _Inputs(kver, image, busybox, dropbear, init_script, recovery_init_script,
                   libraries, resolve_modules(kver, MODULES),
                   resolve_modules(kver, RECOVERY_MODULES), sensors, discovery,
                   sftp_guest_path=_sftp_server_path(dropbear))


# ------------------------------------------------------------------- cache layout
#
#   <cache>/kernel-<sha16>/vmlinux     unpacked kernel, keyed by the bzImage's hash (shared)
#   <cache>/<key16>/initrd.cpio.gz     one entry per input set
#   <cache>/<key16>/recovery.cpio.gz   the recovery environment's initramfs of that set
#   <cache>/<key16>/host_key.pub, host_key.fingerprint, manifest.json (written last)
#   <cache>/stamps/<ctx16>.json        stat signatures of the inputs -> key (fast path)

def _entry_guest(entry: Path) -> ReferenceGuest | None:
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    kernel = entry.parent / manifest["kernel"]
    initrd = entry / "initrd.cpio.gz"
    recovery = entry / "recovery.cpio.gz"
    pub = entry / "host_key.pub"
    if not (kernel.is_file() and initrd.is_file() and recovery.is_file() and pub.is_file()):
        return None
    return ReferenceGuest(kernel=kernel, initrd=initrd, kernel_version=manifest["kernel_version"],
                          host_key_pub=pub, key=manifest["key"],
                          host_key_fingerprint=manifest.get("host_key_fingerprint", ""),
                          pvh=manifest.get("pvh", True),
                          modules=tuple(manifest.get("modules", ())), recovery_initrd=recovery)


def _stamp_lookup(stamp: Path, context: dict[str, object]) -> str | None:
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if data.get("context") != context:
        return None
    for path, sig in data.get("stats", {}).items():
        if _stat_sig(Path(path)) != sig:
            return None
    return data.get("key")


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _prune(cache: Path, keep: Path) -> None:
    """Keep the newest KEEP_ENTRIES guests (and `keep`), their kernels, nothing else."""
    entries = sorted((p for p in cache.iterdir() if (p / "manifest.json").is_file()),
                     key=lambda p: (p / "manifest.json").stat().st_mtime_ns, reverse=True)
    kept = [keep] + [p for p in entries if p != keep][: KEEP_ENTRIES - 1]
    for p in entries:
        if p not in kept:
            shutil.rmtree(p, ignore_errors=True)
    kernels = set()
    for p in kept:
        with contextlib.suppress(OSError, ValueError, KeyError):
            kernels.add(Path(json.loads((p / "manifest.json").read_text())["kernel"]).parts[0])
    now = time.time()
    for p in cache.iterdir():
        if p.name.startswith("kernel-") and p.name not in kernels:
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".tmp-") and now - p.stat().st_mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- build

@dataclass
class _Request:
    """The arguments that select the inputs, with their defaults filled in."""

    cache: Path
    kernel_version: str | None
    kernel_image: Path | None
    init_script: Path
    busybox: Path
    dropbear: Path
    recovery_init_script: Path = RECOVERY_INIT_SCRIPT

    @classmethod
    def make(cls, cache_dir: Path | None, kernel_version: str | None, kernel_image: Path | None,
             init_script: Path | None, busybox: Path | None, dropbear: Path | None,
             recovery_init_script: Path | None = None) -> _Request:
        return cls(Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                   kernel_version, Path(kernel_image) if kernel_image else None,
                   Path(init_script) if init_script else INIT_SCRIPT,
                   Path(busybox) if busybox else BUSYBOX, Path(dropbear) if dropbear else DROPBEAR,
                   Path(recovery_init_script) if recovery_init_script else RECOVERY_INIT_SCRIPT)

    def context(self) -> dict[str, object]:
        return {"builder": BUILDER_VERSION, "kernel_version": self.kernel_version,
                "kernel_image": str(self.kernel_image) if self.kernel_image else None,
                "init_script": str(self.init_script), "busybox": str(self.busybox),
                "dropbear": str(self.dropbear),
                "recovery_init_script": str(self.recovery_init_script),
                "env": {k: os.environ.get(k) for k in ("KVER", "KDIR")}}

    def stamp(self) -> Path:
        digest = hashlib.sha256(json.dumps(self.context(), sort_keys=True).encode()).hexdigest()
        return self.cache / "stamps" / f"{digest[:16]}.json"

    def from_stamp(self) -> ReferenceGuest | None:
        """The cached guest when no input's size, mtime or inode changed since it was keyed."""
        key = _stamp_lookup(self.stamp(), self.context())
        if key is None:
            return None
        guest = _entry_guest(self.cache / key[:16])
        return guest if guest is not None and guest.key == key else None

    def resolve(self) -> tuple[_Inputs, str, dict[str, object], dict[str, str], dict[str, object]]:
        """(inputs, key, recipe, content hashes, stat signatures) from the inputs' contents."""
        inputs = _resolve_inputs(self.kernel_version, self.kernel_image, self.init_script,
                                 self.busybox, self.dropbear, self.recovery_init_script)
        # Stat before hashing: a file changing meanwhile then only costs a rehash next time.
        stats = {str(p): _stat_sig(p) for p in [*(p for _, p in inputs.files()), *inputs.discovery]}
        hashes = {str(path): sha256_file(path) for _, path in inputs.files()}
        recipe = {
            "builder": BUILDER_VERSION,
            "kernel_version": inputs.kernel_version,
            "modules_requested": list(MODULES),
            "recovery_modules_requested": list(RECOVERY_MODULES),
            "inputs": [[role, hashes[str(path)]] for role, path in inputs.files()],
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        return inputs, key, recipe, hashes, {"context": self.context(), "stats": stats, "key": key}


def build_reference_guest(cache_dir: Path | None = None, progress: Progress = print,
                          force: bool = False, *, kernel_version: str | None = None,
                          kernel_image: Path | None = None, init_script: Path | None = None,
                          busybox: Path | None = None, dropbear: Path | None = None,
                          recovery_init_script: Path | None = None) -> ReferenceGuest:
    """Build (or fetch from the cache) the Linux reference guest.

    cache_dir: default $HARNESS_CACHE/guest/linux-ref or <repo>/build/guest/linux-ref.
    force: rebuild even when a cached guest matches (new host key too).
    The keyword-only arguments replace one input (tests, other kernels); by default the
    kernel is /boot/vmlinuz-<`make -s -C drivers/linux print-kver`>.
    The guest's `initrd` and its `recovery_initrd` are built together, as one cache entry
    keyed by the inputs of both (recovery_init_script included).
    Raises GuestBuildError naming what is missing and the fix.
    """
    start = time.perf_counter()
    req = _Request.make(cache_dir, kernel_version, kernel_image, init_script, busybox, dropbear,
                        recovery_init_script)
    _ensure_sensor_modules(progress)
    if not force and (guest := req.from_stamp()) is not None:
        progress(f"guest: cached (key {guest.key[:12]}, "
                 f"{(time.perf_counter() - start) * 1000:.0f} ms)")
        return guest

    inputs, key, recipe, hashes, stamp = req.resolve()
    entry = req.cache / key[:16]
    with _locked(req.cache):
        guest = None if force else _entry_guest(entry)
        if guest is None or guest.key != key:
            guest = _build(req.cache, entry, key, recipe, inputs, hashes, progress, force)
            progress(f"guest: built in {time.perf_counter() - start:.1f} s (key {key[:12]}) "
                     f"in {entry}")
        else:
            progress(f"guest: cached (key {key[:12]})")
        _write_json(req.stamp(), stamp)
    return guest


def cached_reference_guest(cache_dir: Path | None = None) -> ReferenceGuest | None:
    """The cached guest matching the current inputs, or None if it needs a (re)build.

    Builds nothing (not even the sensor modules); raises GuestBuildError when an
    input is missing altogether.
    """
    req = _Request.make(cache_dir, None, None, None, None, None)
    if _sensor_stale():
        return None
    if (guest := req.from_stamp()) is not None:
        return guest
    _inputs, key, _recipe, _hashes, stamp = req.resolve()
    guest = _entry_guest(req.cache / key[:16])
    if guest is None or guest.key != key:
        return None
    _write_json(req.stamp(), stamp)  # the next look is a stat check again
    return guest


def _build(cache: Path, entry: Path, key: str, recipe: dict[str, object], inputs: _Inputs,
           hashes: dict[str, str], progress: Progress, force: bool) -> ReferenceGuest:
    kernel_rel, pvh = _kernel(cache, inputs, hashes, progress, force)

    archive = _base_archive(inputs.init_script, inputs.busybox, REQUIRED_APPLETS, inputs.modules)
    for build, ko in inputs.sensors.items():
        archive.file(f"{GUEST_SENSOR_DIR}/{build}/harness_sensor.ko", ko.read_bytes())

    # dropbear, its libraries, the accounts it needs
    archive.file("usr/sbin/dropbear", inputs.dropbear.read_bytes(), 0o755)
    for guest_path, host in inputs.libraries:
        archive.file(guest_path, host.read_bytes(), 0o755)
    # SFTP: OpenSSH's sftp-server, where this dropbear execs it (and at OpenSSH's own path).
    archive.file(GUEST_SFTP_SERVER, inputs.sftp_server.read_bytes(), 0o755)
    if inputs.sftp_guest_path != GUEST_SFTP_SERVER:
        archive.symlink(inputs.sftp_guest_path, GUEST_SFTP_SERVER)
    # The QEMU guest agent (/init starts it on the org.qemu.guest_agent.0 port).
    archive.file(GUEST_QEMU_GA, inputs.qemu_ga.read_bytes(), 0o755)
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.file("etc/group", b"root:x:0:\ntty:x:5:\n")
    archive.file("etc/shells", b"/bin/sh\n")
    archive.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
    archive.file("etc/hostname", b"harness-guest\n")

    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        pub, fingerprint, private = _host_key(tmp, progress)
        archive.mkdir("etc/dropbear", 0o700)
        archive.file(GUEST_HOST_KEY, private, 0o600)
        (tmp / "host_key.pub").write_text(pub + "\n")
        (tmp / "host_key.fingerprint").write_text(fingerprint + "\n")

        initrd = archive.to_gzip()
        (tmp / "initrd.cpio.gz").write_bytes(initrd)
        modules = tuple(m.name.removesuffix(".ko") for m in inputs.modules)
        progress(f"guest: initramfs {len(initrd) / 1e6:.1f} MB ({archive.payload_bytes() / 1e6:.1f} "
                 f"MB unpacked), {len(modules)} modules + harness_sensor.ko x{len(inputs.sensors)}")

        # The recovery environment: no sensor, no dropbear, no host key.
        recovery = _base_archive(inputs.recovery_init_script, inputs.busybox, RECOVERY_APPLETS,
                                 inputs.recovery_modules)
        recovery.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        recovery.file("etc/group", b"root:x:0:\n")
        recovery.file("etc/hostname", b"harness-recovery\n")
        recovery_initrd = recovery.to_gzip()
        (tmp / "recovery.cpio.gz").write_bytes(recovery_initrd)
        recovery_modules = tuple(m.name.removesuffix(".ko") for m in inputs.recovery_modules)
        progress(f"guest: recovery initramfs {len(recovery_initrd) / 1e6:.1f} MB, "
                 f"{len(recovery_modules)} modules, no sensor")
        manifest = {
            "key": key,
            "kernel_version": inputs.kernel_version,
            "kernel": kernel_rel,
            "pvh": pvh,
            "modules": list(modules),
            "host_key_fingerprint": fingerprint,
            "initrd_bytes": len(initrd),
            "recovery_modules": list(recovery_modules),
            "recovery_initrd_bytes": len(recovery_initrd),
            "recipe": recipe,
            "sources": {role: str(path) for role, path in inputs.files()},
            "content_dir": f"/data/{CONTENT_DIR}",
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_json(tmp / "manifest.json", manifest)
        tmp.chmod(0o755)
        if entry.exists():
            shutil.rmtree(entry)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(cache, entry)
    guest = _entry_guest(entry)
    assert guest is not None
    return guest


def _base_archive(init_script: Path, busybox: Path, applets: tuple[str, ...],
                  modules: list[KernelModule]) -> Archive:
    """/init, the mount points, busybox with its applet links, the modules and their load order."""
    archive = Archive()
    for d in ("proc", "sys", "dev", "run", "tmp", "data", "media", "root", "etc/harness"):
        archive.mkdir(d, 0o700 if d == "root" else (0o1777 if d == "tmp" else 0o755))
    archive.chardev("dev/console", 5, 1)
    archive.file("init", init_script.read_bytes(), 0o755)
    archive.file("etc/harness/lib.sh", INIT_LIB.read_bytes(), 0o644)

    # busybox and its applets (links made here: nothing to install at boot)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    listing = subprocess.run([str(busybox), "--list-full"], capture_output=True,
                             text=True, check=False).stdout.split()
    missing = [a for a in applets if not any(p.rsplit("/", 1)[-1] == a for p in listing)]
    if missing:
        raise GuestBuildError(f"{busybox} lacks the applets {', '.join(missing)} that "
                              f"{init_script.name} uses: install Debian's busybox-static")
    for applet in listing:
        if applet != "bin/busybox" and applet not in archive:
            archive.symlink(applet, "/bin/busybox")

    # kernel modules, uncompressed, and the order /init loads them in
    for module in modules:
        try:
            archive.file(module.guest_path, read_module(module.host_path))
        except OSError as exc:
            raise GuestBuildError(f"cannot read kernel module {module.host_path}: {exc}")
    archive.file(GUEST_MODULE_LIST, "".join(m.guest_path + "\n" for m in modules).encode())
    return archive


def _kernel(cache: Path, inputs: _Inputs, hashes: dict[str, str], progress: Progress,
            force: bool) -> tuple[str, bool]:
    """The kernel file (relative to the cache) and whether it boots through PVH."""
    kdir = cache / f"kernel-{hashes[str(inputs.kernel_image)][:16]}"
    for name, pvh in (("vmlinux", True), ("bzImage", False)):
        if not force and (kdir / name).is_file():
            progress(f"guest: reusing {kdir / name} (unpacked from {inputs.kernel_image})")
            return f"{kdir.name}/{name}", pvh
    progress(f"guest: extracting vmlinux from {inputs.kernel_image}")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        extract_vmlinux(inputs.kernel_image, tmp / "vmlinux")
        if has_pvh_note(tmp / "vmlinux"):
            name, pvh = "vmlinux", True
            progress(f"guest: vmlinux {(tmp / 'vmlinux').stat().st_size / 1e6:.1f} MB, "
                     "PVH entry note present")
        else:
            # QEMU only boots an ELF kernel through PVH: fall back to the (slower) bzImage.
            (tmp / "vmlinux").unlink()
            shutil.copyfile(inputs.kernel_image, tmp / "bzImage")
            name, pvh = "bzImage", False
            progress(f"guest: warning: the vmlinux in {inputs.kernel_image} has no PVH note "
                     "(XEN_ELFNOTE_PHYS32_ENTRY); booting the bzImage instead (slower)")
        tmp.chmod(0o755)
        if kdir.exists():
            shutil.rmtree(kdir)
        os.rename(tmp, kdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"{kdir.name}/{name}", pvh


def _host_key(tmp: Path, progress: Progress) -> tuple[str, str, bytes]:
    """A fresh ed25519 host key: (OpenSSH public line, SHA256 fingerprint, dropbear private key)."""
    dropbearkey = _which("dropbearkey")
    if dropbearkey is None:
        raise GuestBuildError("dropbearkey is not installed: run make setup "
                              "(or apt-get install dropbear-bin)")
    keyfile = tmp / "host_key"
    proc = subprocess.run([dropbearkey, "-t", "ed25519", "-f", str(keyfile)],
                          capture_output=True, text=True, check=False)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("ssh-ed25519 ")), None)
    if proc.returncode != 0 or line is None or not keyfile.is_file():
        raise GuestBuildError(f"dropbearkey -t ed25519 failed: {(proc.stderr or proc.stdout).strip()}")
    blob = line.split()[1]
    fingerprint = _fingerprint(blob)
    private = keyfile.read_bytes()
    keyfile.unlink()
    progress(f"guest: host key ed25519 {fingerprint}")
    return f"ssh-ed25519 {blob} harness-reference-guest", fingerprint, private
