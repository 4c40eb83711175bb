"""Boot the reference guest with a vendor driver loaded at boot-start time, in plain QEMU (TCG).

The reference guest's /init loads only the sample sensor, and harness/guest/ has no hook for
another module yet.  So this boots the reference guest's kernel with its initramfs followed by
a small overlay archive (the kernel unpacks concatenated archives in order):

    /acme/init          tests/vendor_driver/init.sh, started with rdinit=/acme/init
    /acme/driver.ko     the vendor module
    /acme/driver.conf   MODULE, PARAMS, CONTENT_DIR

/acme/init loads the reference initramfs's kernel modules, mounts the data disk (made with
harness.guest.build_data_disk: the files are in content/) at /data, bind-mounts /data/content
at the driver's content directory, runs `insmod driver.ko PARAMS` and powers off.  The data disk
is mounted before the driver loads, as the reference /init does for the sample sensor.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.guest import ReferenceGuest, build_data_disk
from harness.guest.cpio import Archive

INIT_SCRIPT = Path(__file__).resolve().parent / "init.sh"
GUEST_INIT = "/acme/init"
GUEST_MODULE = "/acme/driver.ko"
# A vendor's console: only KERN_ERR and above reach it; the Oops and panic still do.
CMDLINE = ("console=ttyS0,115200", "quiet", "loglevel=4", "panic=1", "oops=panic",
           f"rdinit={GUEST_INIT}")


@dataclass(frozen=True)
class Boot:
    console: str  # the serial console, CR stripped
    returncode: int  # QEMU's
    seconds: float  # from QEMU start to its exit


def overlay(module: Path, params: str, content_dir: str) -> bytes:
    """The gzip'd newc archive appended to the reference initramfs."""
    if not PurePosixPath(content_dir).is_absolute():
        raise ValueError(f"content_dir must be an absolute guest path, not {content_dir!r}")
    archive = Archive()
    archive.file(GUEST_INIT, INIT_SCRIPT.read_bytes(), 0o755)
    archive.file(GUEST_MODULE, Path(module).read_bytes())
    conf = (f"MODULE={shlex.quote(GUEST_MODULE)}\nPARAMS={shlex.quote(params)}\n"
            f"CONTENT_DIR={shlex.quote(content_dir)}\n")
    archive.file("/acme/driver.conf", conf.encode())
    return archive.to_gzip()


def initrd_with_driver(guest: ReferenceGuest, module: Path, params: str, content_dir: str,
                       out: Path) -> Path:
    """out = the reference initramfs followed by the overlay (padded to 4 bytes between)."""
    base = guest.initrd.read_bytes()
    out.write_bytes(base + b"\0" * (-len(base) % 4) + overlay(module, params, content_dir))
    return out


def boot_with_driver(qemu: str, guest: ReferenceGuest, module: Path, params: str,
                     content_dir: str, files: Mapping[str, bytes], work: Path,
                     timeout: float = 180) -> Boot:
    """One boot with `files` in the driver's content directory; returns once QEMU exits
    (the guest powers off, or panics: -no-reboot turns panic=1's reboot into an exit)."""
    disk = work / "data.img"
    build_data_disk(disk, files)
    initrd = initrd_with_driver(guest, module, params, content_dir, work / "initrd.cpio.gz")
    argv = [qemu, "-accel", "tcg", "-M", "pc", "-cpu", "qemu64", "-m", "256", "-nographic",
            "-no-reboot", "-kernel", str(guest.kernel), "-initrd", str(initrd),
            "-append", " ".join(CMDLINE), "-device", "pvpanic",
            "-drive", f"file={disk},format=raw,if=virtio"]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"").decode(errors="replace").replace("\r", "")[-4000:]
        raise AssertionError(f"QEMU still running after {timeout:.0f} s; console tail:\n"
                             f"{tail}") from None
    console = (proc.stdout + proc.stderr).decode(errors="replace").replace("\r", "")
    return Boot(console, proc.returncode, time.monotonic() - start)
