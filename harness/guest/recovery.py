"""The recovery medium: what a recovery boot of the reference guest runs, on a small disk.

The product proves that a recovery script brings a boot-looping machine back, as after
the Channel File 291 outage (Safe Mode or WinRE, then delete the bad C-00000291*.sys).
On the reference guest the script comes on a recovery medium, a small raw ext4 image
attached as the second virtio disk (/dev/vdb; the data disk stays /dev/vda):

    recover.sh       the user's recovery script (mode 0755), run as `sh /media/recover.sh`
    bad-files.txt    one line per file the harness names as the bad update, in sha256sum
                     format: `<sha256 hex>  <file name>`

Two paths run it, both with cwd / and the environment
HARNESS_CONTENT_DIR=/data/content, HARNESS_BAD_FILES=/media/bad-files.txt,
HARNESS_RECOVERY_PATH=safe-mode|recovery-env:

* safe mode: the normal initramfs with `guest.cmdline(mode="safe")`; the script runs
  after the data disk is mounted, then the boot goes on to HARNESS-BOOT-COMPLETE;
* the recovery environment: `guest.recovery_initrd` with `guest.recovery_cmdline()`;
  the script runs, the data disk is unmounted and the guest powers off.

SAMPLE_SCRIPT (vm-templates/linux/recovery/remove-bad-content.sh) deletes each listed
file whose SHA-256 matches and nothing else.  The markers are in
vm-templates/linux/README.md.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.bad_update import BAD_FILES_NAME, bad_file_entry, bad_files_text
from harness.guest import DataDiskError, RecoveryMediumError
from harness.guest.datadisk import _tool
from harness.paths import VM_TEMPLATES

SAMPLE_SCRIPT = VM_TEMPLATES / "linux" / "recovery" / "remove-bad-content.sh"
SCRIPT_NAME = "recover.sh"
MEDIUM_LABEL = "harness-recov"
MAX_SCRIPT_BYTES = 64 << 20

_MiB = 1 << 20

__all__ = ["BAD_FILES_NAME", "SAMPLE_SCRIPT", "SCRIPT_NAME", "bad_file_entry",
           "build_recovery_medium"]


def _script_bytes(image: Path, script: Path | str | bytes) -> bytes:
    if isinstance(script, (bytes, bytearray, memoryview)):
        return bytes(script)
    if not isinstance(script, (str, os.PathLike)):
        raise RecoveryMediumError(f"{image}: script must be a path or the script's bytes, "
                                  f"not {type(script).__name__}")
    path = Path(script)
    if not path.exists():
        raise RecoveryMediumError(f"recovery script {path} does not exist: give the path of a "
                                  f"sh script (e.g. {SAMPLE_SCRIPT}) or its bytes")
    if path.is_dir():
        raise RecoveryMediumError(f"recovery script {path} is a directory: give the path of a "
                                  "sh script file")
    try:
        size = path.stat().st_size
        if size > MAX_SCRIPT_BYTES:
            raise RecoveryMediumError(f"recovery script {path} is {size} bytes: more than "
                                      f"{MAX_SCRIPT_BYTES >> 20} MiB is not a script")
        return path.read_bytes()
    except OSError as exc:
        raise RecoveryMediumError(f"cannot read recovery script {path}: {exc.strerror or exc}") \
            from None


def build_recovery_medium(path: Path, script: Path | str | bytes,
                          bad_files: Sequence[tuple[str | bytes, str]]) -> None:
    """Make the raw ext4 image `path`: recover.sh (`script`, mode 0755) and bad-files.txt.

    script: the recovery script's path, or its bytes (run with busybox sh).
    bad_files: (sha256 hex, file name) of each file the harness names as the bad update,
    in the order of the `<sha256 hex>  <file name>` lines written; the first item may also
    be the file's bytes, hashed here (bad_file_entry(name, data) makes a pair).  An empty
    sequence gives an empty bad-files.txt.
    An existing file at `path` is replaced atomically.  Raises RecoveryMediumError
    (a DataDiskError) naming the image or the script and the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise RecoveryMediumError(f"{path} is a directory; give the path of the image file")
    parent = path.parent
    if not parent.is_dir():
        raise RecoveryMediumError(f"{path}: directory {parent} does not exist")
    listing = bad_files_text(path, bad_files)
    data = _script_bytes(path, script)
    try:
        mke2fs = _tool("mke2fs", path)
    except DataDiskError as exc:
        raise RecoveryMediumError(str(exc)) from None
    # 1 KiB blocks, no journal: the guest mounts it read-only and nothing replays anything.
    size = max(2, (len(data) + len(listing)) * 5 // 4 // _MiB + 2)
    with tempfile.TemporaryDirectory(prefix=".recovery-", dir=parent) as tmp:
        staging = Path(tmp) / "root"
        staging.mkdir()
        (staging / SCRIPT_NAME).write_bytes(data)
        (staging / SCRIPT_NAME).chmod(0o755)
        (staging / BAD_FILES_NAME).write_bytes(listing)
        (staging / BAD_FILES_NAME).chmod(0o644)
        image = Path(tmp) / "medium.img"
        argv = [mke2fs, "-q", "-t", "ext4", "-L", MEDIUM_LABEL, "-m", "0", "-b", "1024",
                "-O", "^has_journal", "-E", "root_owner=0:0", "-d", str(staging), "-F",
                str(image), f"{size}M"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RecoveryMediumError(f"{path}: mke2fs failed (exit {proc.returncode}): "
                                      f"{(proc.stderr or proc.stdout).strip()}")
        os.replace(image, path)
