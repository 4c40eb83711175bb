"""The bad update as recovery media list it: one line per file, in sha256sum format
(`<sha256 hex>  <file name>`), read by every family's recovery script (the reference
guest's medium, the WinPE medium) to delete exactly those files and nothing else."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import RecoveryMediumError

BAD_FILES_NAME = "bad-files.txt"
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


def bad_update_list(files: dict[str, bytes]) -> list[tuple[str, str]]:
    """(sha256, name) of each file named as the bad update, as the recovery medium lists them."""
    return [(hashlib.sha256(data).hexdigest(), name) for name, data in sorted(files.items())]


def bad_file_entry(name: str, data: bytes) -> tuple[str, str]:
    """(sha256 hex, name) of a bad file from its content: an item of `bad_files`."""
    return hashlib.sha256(bytes(data)).hexdigest(), name


def _check_name(image: Path, name: object) -> str:
    if not isinstance(name, str):
        raise RecoveryMediumError(f"{image}: a bad file's name must be a str, not {name!r}")
    if (not name or name in (".", "..") or "/" in name or "\\" in name
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or name != name.strip()
            or len(name.encode()) > 255):
        raise RecoveryMediumError(
            f"{image}: {name!r} cannot be listed in {BAD_FILES_NAME}: give the plain name of a "
            "file in the content directory (no '/', backslash, control characters or "
            "surrounding spaces), e.g. C-00000291-00000000-00000032.sys")
    return name


def bad_files_text(image: Path, bad_files: Sequence[tuple[str | bytes, str]]) -> bytes:
    if isinstance(bad_files, (str, bytes)) or not isinstance(bad_files, Sequence):
        raise RecoveryMediumError(f"{image}: bad_files must be a sequence of (sha256 hex, file "
                                  f"name) pairs, not {type(bad_files).__name__}")
    lines = []
    for item in bad_files:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise RecoveryMediumError(f"{image}: {item!r} in bad_files is not a (sha256 hex, "
                                      "file name) pair")
        digest, name = item
        if isinstance(name, str) and isinstance(digest, str) and _SHA256_RE.fullmatch(name) \
                and not _SHA256_RE.fullmatch(digest):
            raise RecoveryMediumError(f"{image}: {item!r} in bad_files looks like (name, sha256): "
                                      "give (sha256 hex, file name), the order of the lines")
        _check_name(image, name)
        if isinstance(digest, (bytes, bytearray, memoryview)):
            digest = hashlib.sha256(bytes(digest)).hexdigest()  # the file's content itself
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise RecoveryMediumError(
                f"{image}: the hash of {name} must be 64 hex digits (hashlib.sha256(data)"
                f".hexdigest(), or bad_file_entry(name, data)), not {digest!r}")
        lines.append(f"{digest.lower()}  {name}\n")
    return "".join(lines).encode()
