"""Copies of the snapshot under the domain names one judge rotates through.

A restored domain keeps the name it was saved with, and libvirt will not rename it; the last
file's domain is still being destroyed in the background (1.4-1.8 s here) when the next file is
restored. So a judge restores from N copies of the image in turn, each under a name of its own
(save_image.write_variant: the header's XML differs, the memory is the same); a copy is made at
its first use, and before a name is used again its last domain must be gone.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from ..errors import InfraError
from ..vm.save_image import SaveImage, read_image, renamed_xml, write_variant

ROTATION = 3  # names per judge: enough that a background destroy is done before its turn comes
CLOSE_WAIT_S = 120.0


@dataclass
class Variant:
    index: int
    slot: str  # the Machine slot, hence the domain name's tail
    image: Path | None = None
    name: str = ""  # the domain name in its image
    xml: str = ""
    closing: Future[None] | None = None  # the background teardown of its last machine


class VariantPool:
    def __init__(self, base: Path, work: Path, slot_prefix: str, size: int = ROTATION) -> None:
        self.base: SaveImage = read_image(base)
        self.work = work
        self.variants = [Variant(k, f"{slot_prefix}-{k}") for k in range(size)]
        self.turn = 0

    def take(self, domain_name: str, index: int) -> Variant:
        """Variant `index`, its last machine gone, its image made for `domain_name`."""
        variant = self.variants[index]
        if variant.closing is not None:
            try:
                variant.closing.result(timeout=CLOSE_WAIT_S)
            except Exception:  # a teardown that failed: its domain is removed by name below
                pass
            variant.closing = None
        if variant.image is not None and variant.name != domain_name:
            raise InfraError(f"{variant.image} restores as {variant.name}, not {domain_name}")
        if variant.image is None:
            variant.name = domain_name
            variant.xml = renamed_xml(self.base.xml, domain_name)
            variant.image = write_variant(self.base, self.work / f"{variant.index}.save", variant.xml)
        return variant

    def next_index(self) -> int:
        index = self.turn % len(self.variants)
        self.turn += 1
        return index

    def drain(self) -> None:
        for variant in self.variants:
            if variant.closing is not None:
                try:
                    variant.closing.result(timeout=CLOSE_WAIT_S)
                except Exception as exc:
                    raise InfraError(f"tearing down a restored machine failed: {exc}") from None
