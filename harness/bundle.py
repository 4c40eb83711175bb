"""`harness bundle ARTIFACTS_DIR`: one archive of what a failed run left, to send back.

What goes in: every text artifact of every machine (serial and COM logs, events,
verdicts, domain XML and log, the content files fed, what recovery scripts removed,
repro lines, build logs). What stays out, each listed with its reason in the
archive's MANIFEST.txt: disk images (large and rebuilt from their recipe), media
that may hold a BitLocker recovery password, private keys, password files and any
file whose text holds a private key. The archive is made under a temporary name and
renamed when whole.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import InputFileError

# Large binary images rebuilt from their recipe: the logs say what they held.
IMAGE_SUFFIXES = (".img", ".qcow2", ".fd", ".iso", ".wim", ".raw", ".vhd", ".vhdx")
# Files that are secrets by name.
SECRET_NAMES = ("id_rsa", "id_ed25519", "id_ecdsa", "ssh_host_ed25519_key", "ssh_host_rsa_key")
SECRET_WORDS = ("password", "passwd", "secret", "bitlocker", "private")
PRIVATE_KEY_MARK = b"PRIVATE KEY-----"
REGISTRY_HIVES = ("SOFTWARE", "SYSTEM", "SAM", "SECURITY", "BCD")
MAX_FILE_BYTES = 256 << 20  # a serial log larger than this is cut to its last part


def left_out(path: Path) -> str | None:
    """Why `path` stays out of a bundle, or None when it goes in."""
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES) or name.endswith(".img.part"):
        return "disk or medium image (rebuilt from its recipe; it may hold secrets)"
    if name in SECRET_NAMES or name.endswith((".pem", ".key", ".pfx", ".p12")):
        return "private key"
    if path.name in REGISTRY_HIVES:
        return "registry hive (may hold an autologon password)"
    if any(word in name for word in SECRET_WORDS):
        return "a secret by its name"
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if PRIVATE_KEY_MARK in head:
        return "holds a private key"
    return None


def _files(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path


def bundle(artifacts: Path, out: Path | None = None) -> tuple[Path, list[str], list[tuple[str, str]]]:
    """Write the archive; return (its path, the files put in, (file, why) of those left out)."""
    if not artifacts.is_dir():
        raise InputFileError(f"{artifacts}: no such artifacts directory; give a run's directory, "
                             "e.g. artifacts/<run id>")
    out = out or artifacts.parent / f"{artifacts.name}-bundle-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
    if out.resolve().is_relative_to(artifacts.resolve()):
        raise InputFileError(f"{out}: the bundle cannot be written inside the directory it bundles; "
                             "give -o a path outside it")
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    partial = out.with_name(f".{out.name}.part")
    with tarfile.open(partial, "w:gz") as tar:
        for path in _files(artifacts):
            relative = str(path.relative_to(artifacts))
            reason = left_out(path)
            if reason is not None:
                skipped.append((relative, reason))
                continue
            arcname = f"{artifacts.name}/{relative}"
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:  # the end of an endless log is what matters
                with path.open("rb") as handle:
                    handle.seek(size - MAX_FILE_BYTES)
                    data = handle.read()
                _add_bytes(tar, arcname, data)
                skipped.append((relative, f"cut to its last {MAX_FILE_BYTES >> 20} MiB of {size} bytes"))
            else:
                tar.add(path, arcname=arcname, recursive=False)
            kept.append(relative)
        manifest = ["harness bundle of " + str(artifacts), "", "left out (file: why):"]
        manifest += [f"  {name}: {why}" for name, why in skipped] or ["  nothing"]
        _add_bytes(tar, f"{artifacts.name}/MANIFEST.txt", ("\n".join(manifest) + "\n").encode())
    os.replace(partial, out)
    return out, kept, skipped


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
