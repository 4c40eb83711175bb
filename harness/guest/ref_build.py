"""The reference guest's images from resolved inputs: the unpacked kernel, the normal and the
recovery initramfs, a fresh host key, and the cache entry holding them (manifest last)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.guest import GuestBuildError
from harness.guest.cpio import Archive
from harness.guest.datadisk import CONTENT_DIR
from harness.guest.kernel import KernelModule, extract_vmlinux, has_pvh_note, read_module
from harness.guest.ref_cache import entry_guest, prune, write_json
from harness.guest.ref_guest import (
    GUEST_HOST_KEY,
    GUEST_MODULE_LIST,
    GUEST_QEMU_GA,
    GUEST_SENSOR_DIR,
    GUEST_SFTP_SERVER,
    INIT_LIB,
    RECOVERY_APPLETS,
    REQUIRED_APPLETS,
    Progress,
    ReferenceGuest,
)
from harness.guest.ref_inputs import Inputs, find_program


def build_guest(cache: Path, entry: Path, key: str, recipe: dict[str, object], inputs: Inputs,
                hashes: dict[str, str], progress: Progress, force: bool) -> ReferenceGuest:
    """Both initramfs images and a fresh host key into the cache entry `entry` (replaced
    whole, manifest last), the kernel beside it; older entries pruned."""
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
        write_json(tmp / "manifest.json", manifest)
        _publish(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(cache, entry)
    guest = entry_guest(entry)
    assert guest is not None
    return guest


def _publish(tmp: Path, dest: Path) -> None:
    """A directory built under a temporary name takes `dest`'s place (readable by QEMU)."""
    tmp.chmod(0o755)
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(tmp, dest)


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


def _kernel(cache: Path, inputs: Inputs, hashes: dict[str, str], progress: Progress,
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
        _publish(tmp, kdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"{kdir.name}/{name}", pvh


def _host_key(tmp: Path, progress: Progress) -> tuple[str, str, bytes]:
    """A fresh ed25519 host key: (OpenSSH public line, SHA256 fingerprint, dropbear private key)."""
    dropbearkey = find_program("dropbearkey")
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


def _fingerprint(blob_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
