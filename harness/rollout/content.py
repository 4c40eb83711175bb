"""The files a rollout ships: the baseline every machine runs before the update, and the
update itself, each under the name the driver will see.

The sample sensor loads every file of its channel, highest sequence last. A file already named
like a channel file keeps its name; any other file becomes a channel-291 file: the baseline
from sequence 1 up, the update from the sequence after the baseline's highest, so the update
is what the sensor reads last, as a new content version is. A vendor's driver sees each file
under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Profile
from ..content.files import read_content_file
from ..content.format import FILE_NAME, file_name
from ..errors import InputFileError
from ..paths import CONTENT_FIXTURES

SAMPLE_GOOD = CONTENT_FIXTURES / "good.sys"


@dataclass(frozen=True)
class ContentSet:
    baseline: dict[str, bytes]  # guest name -> bytes, on every machine's disk before the rollout
    update: dict[str, bytes]  # guest name -> bytes, delivered online
    sources: dict[str, str]  # guest name -> the path the user gave

    def rollback_actions(self) -> list[tuple[str, bytes | None]]:
        """What withdraws the update: each updated name back to its baseline bytes, or removed
        (None) when the baseline had no file of that name."""
        return [(name, self.baseline.get(name)) for name in self.update]


def content_set(update: list[Path], baseline: list[Path] | None, profile: Profile) -> ContentSet:
    """Name the baseline (default: the sample's good file for the sample sensor, nothing for a
    vendor's driver) and the update files for the guest."""
    vendor = profile.driver is not None
    if baseline is None:
        baseline = [] if vendor else [SAMPLE_GOOD]
    sources: dict[str, str] = {}
    base: dict[str, bytes] = {}
    next_sequence = 1
    for path in baseline:
        name = _name(path, vendor, next_sequence)
        next_sequence = max(next_sequence, _sequence(name) + 1)
        _add(base, sources, name, path, "--baseline")
    upd: dict[str, bytes] = {}
    for path in update:
        name = _name(path, vendor, next_sequence)
        next_sequence = max(next_sequence, _sequence(name) + 1)
        _add(upd, sources, name, path, "CONTENT")
    if not upd:
        raise InputFileError("harness rollout: no CONTENT file given; name the update to roll out")
    return ContentSet(base, upd, sources)


def _name(path: Path, vendor: bool, sequence: int) -> str:
    if vendor or FILE_NAME.match(path.name):
        return path.name
    return file_name(291, 0, sequence)


def _sequence(name: str) -> int:
    m = FILE_NAME.match(name)
    return int(m.group(3)) if m else 0


def _add(into: dict[str, bytes], sources: dict[str, str], name: str, path: Path, what: str) -> None:
    if name in into:
        raise InputFileError(f"{path}: {what}: a second file named {name} for the guest; give each file once")
    into[name] = read_content_file(path)
    sources[name] = str(path)
