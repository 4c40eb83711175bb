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

The build is split by job, each module importing only the ones before it: ref_guest
(constants, ReferenceGuest), ref_cache (the cache directory), ref_inputs (input resolution,
the sensor modules' make), ref_build (the images); this module picks the cache entry.
Every name those define that callers used from here is re-exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts import sha256_file
from harness.guest.datadisk import CONTENT_DIR, build_data_disk, read_content_dir
from harness.guest.ref_build import build_guest
from harness.guest.ref_cache import (
    KEEP_ENTRIES,
    default_cache_dir,
    entry_guest,
    locked,
    stamp_lookup,
    stat_signature,
    write_json,
)
from harness.guest.ref_guest import (  # the constants are re-exported: callers use them from here
    BASE_CMDLINE, BUILDER_VERSION, BUSYBOX, DPKG_STATUS, DROPBEAR, GUEST_HOST_KEY,
    GUEST_MODULE_LIST, GUEST_QEMU_GA, GUEST_SENSOR_DIR, GUEST_SFTP_SERVER, INIT_LIB, INIT_SCRIPT,
    LD_SO_CACHE, LINUX_DRIVER_DIR, MODES, MODULES, QEMU_GA, RECOVERY_APPLETS, RECOVERY_INIT_SCRIPT,
    RECOVERY_MODULES, RECOVERY_TIMEOUT, REQUIRED_APPLETS, SENSOR_BUILDS, SENSOR_SOURCES,
    SFTP_SERVER, TRANSPORT_FIX, VENDOR_DRIVER,
    Progress,
    ReferenceGuest,
    sensor_module,
)
from harness.guest.ref_inputs import (
    Inputs,
    ensure_sensor_modules,
    resolve_inputs,
    sensor_stale,
    sftp_server_path,
    shared_libraries,
)

# Their names from before the split (tests call them).
_shared_libraries = shared_libraries
_sftp_server_path = sftp_server_path

__all__ = [
    "BUILDER_VERSION", "CONTENT_DIR", "RECOVERY_TIMEOUT", "ReferenceGuest",
    "build_data_disk", "build_reference_guest", "cached_reference_guest",
    "read_content_dir",
    # re-exported from ref_guest and ref_cache
    "BASE_CMDLINE", "BUSYBOX", "DPKG_STATUS", "DROPBEAR", "GUEST_HOST_KEY", "GUEST_MODULE_LIST",
    "GUEST_QEMU_GA", "GUEST_SENSOR_DIR", "GUEST_SFTP_SERVER", "INIT_LIB", "INIT_SCRIPT",
    "KEEP_ENTRIES", "LD_SO_CACHE", "LINUX_DRIVER_DIR", "MODES", "MODULES", "QEMU_GA",
    "RECOVERY_APPLETS", "RECOVERY_INIT_SCRIPT", "RECOVERY_MODULES", "REQUIRED_APPLETS",
    "SENSOR_BUILDS", "SENSOR_SOURCES", "SFTP_SERVER", "TRANSPORT_FIX", "VENDOR_DRIVER",
    "Progress", "default_cache_dir", "sensor_module",
]


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
        key = stamp_lookup(self.stamp(), self.context())
        if key is None:
            return None
        guest = entry_guest(self.cache / key[:16])
        return guest if guest is not None and guest.key == key else None

    def resolve(self) -> tuple[Inputs, str, dict[str, object], dict[str, str], dict[str, object]]:
        """(inputs, key, recipe, content hashes, stat signatures) from the inputs' contents."""
        inputs = resolve_inputs(self.kernel_version, self.kernel_image, self.init_script,
                                self.busybox, self.dropbear, self.recovery_init_script)
        # Stat before hashing: a file changing meanwhile then only costs a rehash next time.
        stats = {str(p): stat_signature(p)
                 for p in [*(p for _, p in inputs.files()), *inputs.discovery]}
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
    ensure_sensor_modules(progress)
    if not force and (guest := req.from_stamp()) is not None:
        progress(f"guest: cached (key {guest.key[:12]}, "
                 f"{(time.perf_counter() - start) * 1000:.0f} ms)")
        return guest

    inputs, key, recipe, hashes, stamp = req.resolve()
    entry = req.cache / key[:16]
    with locked(req.cache):
        guest = None if force else entry_guest(entry)
        if guest is None or guest.key != key:
            guest = build_guest(req.cache, entry, key, recipe, inputs, hashes, progress, force)
            progress(f"guest: built in {time.perf_counter() - start:.1f} s (key {key[:12]}) "
                     f"in {entry}")
        else:
            progress(f"guest: cached (key {key[:12]})")
        write_json(req.stamp(), stamp)
    return guest


def cached_reference_guest(cache_dir: Path | None = None) -> ReferenceGuest | None:
    """The cached guest matching the current inputs, or None if it needs a (re)build.

    Builds nothing (not even the sensor modules); raises GuestBuildError when an
    input is missing altogether.
    """
    req = _Request.make(cache_dir, None, None, None, None, None)
    if sensor_stale():
        return None
    if (guest := req.from_stamp()) is not None:
        return guest
    _inputs, key, _recipe, _hashes, stamp = req.resolve()
    guest = entry_guest(req.cache / key[:16])
    if guest is None or guest.key != key:
        return None
    write_json(req.stamp(), stamp)  # the next look is a stat check again
    return guest
