"""What the reference guest is made from, resolved on the host: the kernel, busybox, dropbear,
qemu-ga, sftp-server and their shared libraries, the kernel modules, and both sensor builds
(made in the driver tree first when missing or older than their sources)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.guest import GuestBuildError
from harness.guest.kernel import KernelModule, elf_interpreter, modinfo, resolve_modules
from harness.guest.ref_cache import locked
from harness.guest.ref_guest import (
    DPKG_STATUS,
    GUEST_SFTP_SERVER,
    INIT_LIB,
    LD_SO_CACHE,
    LINUX_DRIVER_DIR,
    MODULES,
    QEMU_GA,
    RECOVERY_INIT_SCRIPT,
    RECOVERY_MODULES,
    SENSOR_BUILDS,
    SENSOR_SOURCES,
    SFTP_SERVER,
    TRANSPORT_FIX,
    Progress,
    sensor_module,
)
from harness.paths import DRIVERS_BUILD, driver_tree


def find_program(name: str) -> str | None:
    """`name` on PATH, else in the sbin and bin directories (a non-root PATH lacks sbin)."""
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
         if os.access(p := f"{d}/{name}", os.X_OK)), None)


def sensor_stale() -> list[str]:
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


def ensure_sensor_modules(progress: Progress) -> None:
    if not sensor_stale():
        return
    # One make at a time (parallel harness runs share drivers/build/linux).
    with locked(DRIVERS_BUILD / "linux"):
        reasons = sensor_stale()
        if reasons:
            _make_sensor_modules(reasons, progress)


def _make() -> str:
    make = find_program("make")
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
    still = sensor_stale()
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
    return shared_libraries(dropbear, "dropbear-bin")


def shared_libraries(binary: Path, package: str) -> list[tuple[str, Path]]:
    """(guest path, host file) of each shared library and the loader `binary` needs
    (`package`: the Debian package to reinstall when one is missing)."""
    interp = elf_interpreter(binary)
    if interp is None:
        return []
    ldd = find_program("ldd")
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


def sftp_server_path(dropbear: Path) -> str:
    """Where this dropbear build execs the SFTP subsystem from (its compiled-in
    SFTPSERVER_PATH: /usr/lib/sftp-server in Debian's build), read from the binary."""
    found = re.findall(rb"\x00(/[A-Za-z0-9_./-]*sftp-server)\x00", dropbear.read_bytes())
    if not found:
        raise GuestBuildError(f"{dropbear} names no sftp-server path: it was built without SFTP "
                              "support (reinstall Debian's dropbear-bin)")
    return found[0].decode()


@dataclass
class Inputs:
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


def resolve_inputs(kernel_version: str | None, kernel_image: Path | None,
                   init_script: Path, busybox: Path, dropbear: Path,
                   recovery_init_script: Path = RECOVERY_INIT_SCRIPT) -> Inputs:
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
    if find_program("dropbearkey") is None:
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
                                 shared_libraries(QEMU_GA, "qemu-guest-agent"),
                                 shared_libraries(SFTP_SERVER, "openssh-sftp-server"))
    return Inputs(kver, image, busybox, dropbear, init_script, recovery_init_script,
                  libraries, resolve_modules(kver, MODULES),
                  resolve_modules(kver, RECOVERY_MODULES), sensors, discovery,
                  sftp_guest_path=sftp_server_path(dropbear))
