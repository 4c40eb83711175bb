"""The per-test data disk: a small raw ext4 image holding the sensor's content directory.

Layout (the guest mounts it read-write at /data):

    content/<name>            the channel files; the sensor gets content_dir=/data/content
    harness/authorized_keys   optional: the key the harness logs in with (harness.net=1)
    harness/driver/           optional: a vendor's driver (driver.ko, params, content_dir),
                              loaded by the guest's init instead of the sample sensor

The golden kernel and initramfs are shared and read-only; each test gets its own
disk, made in ~10 ms with `mke2fs -d` (no mount, no root needed).  After a run,
`read_content_dir` reads the content directory back offline with debugfs, so the
harness can see what a recovery step left behind.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from harness.guest import DataDiskError

CONTENT_DIR = "content"
AUTHORIZED_KEYS = "harness/authorized_keys"

_MiB = 1 << 20
_EXT_MAGIC = 0xEF53
_INCOMPAT_RECOVER = 0x4  # the journal holds transactions not yet written back


def _tool(name: str, image: Path) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise DataDiskError(f"{image}: {name} is not installed: run make setup "
                            "(or apt-get install e2fsprogs)")
    return path


def _check_name(image: Path, name: str) -> None:
    if (not name or name in (".", "..") or "/" in name or "\0" in name
            or len(name.encode()) > 255):
        raise DataDiskError(f"{image}: {name!r} cannot be a file name in {CONTENT_DIR}/")


def build_data_disk(path: Path, files: Mapping[str, bytes], size_mib: int = 16,
                    authorized_keys: str | None = None, extra: Mapping[str, bytes] | None = None) -> None:
    """Make the raw ext4 image `path` with content/<name> for each of `files`.

    The image grows beyond `size_mib` when the files need it.  An existing file
    at `path` is replaced atomically.
    """
    path = Path(path)
    for name in files:
        _check_name(path, name)
    if size_mib < 2:
        raise DataDiskError(f"{path}: size_mib={size_mib} is too small (at least 2)")
    extra = extra or {}
    payload = sum(len(data) for data in [*files.values(), *extra.values()]) + len(authorized_keys or "")
    # ext4 metadata (journal, inode tables) plus a margin for what the guest writes.
    needed = (payload * 5 // 4 + 4096 * (len(files) + 2)) // _MiB + 8
    size = max(size_mib, needed)
    mke2fs = _tool("mke2fs", path)
    if path.is_dir():
        raise DataDiskError(f"{path} is a directory; give the path of the image file")
    parent = path.parent
    if not parent.is_dir():
        raise DataDiskError(f"{path}: directory {parent} does not exist")
    with tempfile.TemporaryDirectory(prefix=".datadisk-", dir=parent) as tmp:
        staging = Path(tmp) / "root"
        (staging / CONTENT_DIR).mkdir(parents=True)
        for name, data in files.items():
            (staging / CONTENT_DIR / name).write_bytes(bytes(data))
        if authorized_keys is not None:
            keys = staging / AUTHORIZED_KEYS
            keys.parent.mkdir(mode=0o700)
            text = authorized_keys if authorized_keys.endswith("\n") else authorized_keys + "\n"
            keys.write_text(text)
            keys.chmod(0o600)
        for relative, data in extra.items():  # e.g. harness/driver/driver.ko
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(data))
        image = Path(tmp) / "disk.img"
        argv = [mke2fs, "-q", "-t", "ext4", "-L", "harness-data", "-m", "0",
                # Zero the inode tables and journal now (the image stays small), so the guest
                # kernel does not start an ext4lazyinit thread that writes under TCG.
                "-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
                "-d", str(staging), "-F", str(image), f"{size}M"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DataDiskError(f"{path}: mke2fs failed (exit {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()}")
        os.replace(image, path)


def _superblock(image: Path) -> tuple[int, int]:
    """(magic, feature_incompat) of an ext2/3/4 image."""
    try:
        with image.open("rb") as f:
            f.seek(1024)
            sb = f.read(1024)
    except FileNotFoundError:
        raise DataDiskError(f"data disk {image} does not exist") from None
    except OSError as exc:
        raise DataDiskError(f"cannot read data disk {image}: {exc}") from None
    if len(sb) < 0x64:
        raise DataDiskError(f"{image} is not an ext4 image (only {len(sb) + 1024} bytes)")
    magic = struct.unpack_from("<H", sb, 0x38)[0]
    incompat = struct.unpack_from("<I", sb, 0x60)[0]
    return magic, incompat


def read_content_dir(path: Path) -> dict[str, bytes]:
    """The regular files of content/ in the image `path`, by name ({} when there is no content/).

    Reads offline with `debugfs rdump`.  When the guest stopped without unmounting
    (a crash, a kill), committed changes may sit in the journal only: the journal is
    then replayed on a temporary copy first (`e2fsck -E journal_only`); the image
    itself is never modified.
    """
    path = Path(path)
    magic, incompat = _superblock(path)
    if magic != _EXT_MAGIC:
        raise DataDiskError(f"{path} is not an ext4 image (superblock magic {magic:#06x})")
    debugfs = _tool("debugfs", path)
    with tempfile.TemporaryDirectory(prefix="harness-readdisk-") as tmp:
        image = path
        if incompat & _INCOMPAT_RECOVER:
            image = Path(tmp) / "replayed.img"
            shutil.copyfile(path, image)
            e2fsck = _tool("e2fsck", path)
            proc = subprocess.run([e2fsck, "-E", "journal_only", "-p", str(image)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode >= 4:  # 1 and 2: fixed something; 4+: errors left
                raise DataDiskError(f"{path}: replaying the ext4 journal failed (e2fsck exit "
                                    f"{proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
        out = Path(tmp) / "out"
        out.mkdir()
        proc = subprocess.run([debugfs, "-R", f"rdump /{CONTENT_DIR} {out}", str(image)],
                              capture_output=True, text=True, check=False)
        dumped = out / CONTENT_DIR
        if not dumped.is_dir():
            if "not found" in proc.stderr.lower():
                return {}
            raise DataDiskError(f"{path}: debugfs could not read /{CONTENT_DIR}: "
                                f"{proc.stderr.strip() or f'exit {proc.returncode}'}")
        result: dict[str, bytes] = {}
        for entry in sorted(dumped.iterdir()):
            if entry.is_symlink() or not entry.is_file():
                continue
            if not os.access(entry, os.R_OK):
                entry.chmod(0o600)
            result[entry.name] = entry.read_bytes()
        return result
