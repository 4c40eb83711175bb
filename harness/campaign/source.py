"""Where a campaign's files come from: file `i` of a campaign is a pure function of the
campaign's parameters and `i`, so the same seed gives the same files and a resumed campaign
regenerates exactly the file it had planned.

The sample's format (no vendor `driver:`): file i applies one mutation, taken from the fault
list in a seeded order (every mutation once per round, so a list with `cf291-field21` crashes
the vulnerable build in every round), to a seeded well-formed channel file, or with
`--corpus` first judges each corpus file as it is, then mutates corpus files. A vendor's
driver (format unknown): the corpus files as they are, then byte-level mutations of them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..content.faults import CATALOGUE, FaultError
from ..content.files import read_content_file
from ..content.format import FILE_NAME, ContentFormatError, file_name
from ..content.generate import new_channel_file
from ..errors import InputFileError
from .mutators import BYTE_MUTATORS, mutate_bytes

WELL_FORMED = "well-formed"  # the generated file unchanged: the campaign's control
SAMPLE_MUTATIONS: tuple[str, ...] = (WELL_FORMED, *CATALOGUE, *BYTE_MUTATORS)
VENDOR_MUTATIONS: tuple[str, ...] = tuple(BYTE_MUTATORS)


@dataclass(frozen=True)
class PlannedFile:
    index: int  # 1-based, the order of the campaign
    name: str  # the name the driver sees in the guest
    stored: str  # where the file lives under <out>/files/, relative: a name `reproduce` maps to `name`
    data: bytes
    origin: dict[str, Any]  # how it was made: mutation, base, seed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_mutations(names: list[str], vendor: bool) -> tuple[str, ...]:
    """The --faults list, checked: every name known, byte-level only for a vendor's driver."""
    allowed = VENDOR_MUTATIONS if vendor else SAMPLE_MUTATIONS
    for name in names:
        if name not in allowed:
            why = ("this profile's vendor driver reads a format the harness does not know, so only the "
                   "byte-level mutators apply" if vendor and name in SAMPLE_MUTATIONS else "unknown mutation")
            raise InputFileError(f"--faults: {name!r}: {why}; use a comma-separated list of: {', '.join(allowed)}")
    if not names:
        raise InputFileError(f"--faults: empty list; give at least one of: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def list_corpus(corpus: Path) -> list[Path]:
    """The corpus directory's regular files (not hidden, not in subdirectories), sorted by name."""
    if not corpus.is_dir():
        raise InputFileError(f"--corpus: {corpus}: not a directory; give a directory of content files")
    files = sorted(p for p in corpus.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputFileError(f"--corpus: {corpus}: no files in it; put the content files to mutate there")
    return files


class FileSource:
    def __init__(self, seed: int, mutations: tuple[str, ...], corpus: Path | None, vendor: bool) -> None:
        self.seed = seed
        self.mutations = mutations
        self.vendor = vendor
        self.corpus = list_corpus(corpus) if corpus is not None else []
        if vendor and not self.corpus:
            raise InputFileError("--corpus: required for a profile with a vendor driver (its format is unknown, "
                                 "so files are byte-level mutations of its own): --corpus DIR")

    def plan(self, index: int) -> PlannedFile:
        """File `index` (1-based) of the campaign."""
        if index <= len(self.corpus):
            path = self.corpus[index - 1]
            return self._named(index, path.name, read_content_file(path), {"mutation": "corpus", "base": path.name})
        rng = random.Random(f"campaign:{self.seed}:{index}")
        mutation = self._mutation(index - len(self.corpus))
        base_name, base = self._base(rng)
        _, other = self._base(rng)
        seed = f"{self.seed}:{index}"
        origin: dict[str, Any] = {"mutation": mutation, "base": base_name, "seed": seed}
        if mutation in BYTE_MUTATORS:
            data = mutate_bytes(mutation, base, other, seed)
        elif mutation == WELL_FORMED:
            data = base
        else:
            try:
                data = CATALOGUE[mutation].apply(base, seed=rng.randrange(1 << 31))
            except (FaultError, ContentFormatError, ValueError) as exc:  # a corpus file it cannot apply to
                fallback = rng.choice(VENDOR_MUTATIONS)
                origin.update(mutation=fallback, wanted=mutation, why=str(exc))
                data = mutate_bytes(fallback, base, other, seed)
        keep = base_name if self.corpus else None
        return self._named(index, keep, data, origin)

    def _mutation(self, n: int) -> str:
        """The n-th (1-based) mutation: each round is the list in a seeded order."""
        rounds, at = divmod(n - 1, len(self.mutations))
        order = list(self.mutations)
        random.Random(f"order:{self.seed}:{rounds}").shuffle(order)
        return order[at]

    def _base(self, rng: random.Random) -> tuple[str, bytes]:
        if self.corpus:
            path = rng.choice(self.corpus)
            return path.name, read_content_file(path)
        seed = rng.randrange(1 << 31)
        return f"new --seed {seed}", new_channel_file(instances=rng.randint(1, 8), seed=seed).to_bytes()

    def _named(self, index: int, keep: str | None, data: bytes, origin: dict[str, Any]) -> PlannedFile:
        """A vendor's file keeps its own name, and so does a sample corpus file with a channel-file
        name (in a directory of its own); any other file of the sample is stored as NNNN-<mutation>.sys
        and seen by the driver as the first file of channel 291 (harness/reproduce.py guest_file_name)."""
        if keep is not None and (self.vendor or FILE_NAME.match(keep)):
            return PlannedFile(index, keep, f"{index:04d}/{keep}", data, origin)
        return PlannedFile(index, file_name(291, 0, 1), f"{index:04d}-{origin['mutation']}.sys", data, origin)
