"""Function names for addresses in the driver image, from the link map the build writes.

`drivers/windows/Makefile` links with `-Wl,-Map,harnessflt.map` (global symbols and the
.text range of every object file) and writes `harnessflt.syms` (`nm -n` of the image:
the static functions too, which GNU ld leaves out of a map).  Either file alone works;
an image with neither gets `harnessflt.sys+0x...` names.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

_MAP_SYMBOL = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+([A-Za-z_][A-Za-z0-9_@$.]*)\s*$")
_MAP_TEXT = re.compile(r"^\s*\.text\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S+)")
_NM_LINE = re.compile(r"^([0-9a-fA-F]+)\s+([tT])\s+([A-Za-z_][A-Za-z0-9_@$.]*)$")


@dataclass(frozen=True)
class Location:
    function: str
    offset: int
    module: str

    def __str__(self) -> str:
        return f"{self.module}!{self.function}+{self.offset:#x}"


class Symbols:
    """Address -> function for one image linked at `image_base`, loaded at `load_base`."""

    def __init__(self, module: str, image_base: int, load_base: int,
                 functions: dict[int, str], text_end: int | None) -> None:
        self.module = module
        self.delta = load_base - image_base
        self._starts = sorted(functions)
        self._names = [functions[a] for a in self._starts]
        self._text_end = text_end

    @classmethod
    def for_image(cls, sys_path: Path, image_base: int, load_base: int) -> Symbols:
        functions: dict[int, str] = {}
        text_end: int | None = None
        map_path = sys_path.with_suffix(".map")
        if map_path.is_file():
            text_end = _read_map(map_path, functions)
        syms_path = sys_path.with_suffix(".syms")
        if syms_path.is_file():
            _read_nm(syms_path, functions)
        return cls(sys_path.name, image_base, load_base, functions, text_end)

    def locate(self, addr: int) -> Location | None:
        """The function holding `addr` (a load address), or None outside the image's code."""
        linked = addr - self.delta
        i = bisect.bisect_right(self._starts, linked) - 1
        if i < 0 or (self._text_end is not None and linked >= self._text_end):
            return None
        return Location(self._names[i], linked - self._starts[i], self.module)

    def name(self, addr: int) -> str:
        loc = self.locate(addr)
        return loc.function if loc else f"{self.module}+{addr - self.delta:#x}"

    def address_of(self, function: str) -> int | None:
        for start, name in zip(self._starts, self._names):
            if name == function:
                return start + self.delta
        return None


def _read_map(path: Path, functions: dict[int, str]) -> int | None:
    """Global symbols inside .text; returns the end of the .text output section."""
    text_lo = text_hi = None
    in_text = False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(".text"):
            parts = line.split()
            if len(parts) >= 3:
                text_lo, text_hi = int(parts[1], 16), int(parts[1], 16) + int(parts[2], 16)
            in_text = True
            continue
        if in_text and line and not line[0].isspace():
            in_text = False
        if not in_text:
            continue
        m = _MAP_SYMBOL.match(line)
        if m:
            functions.setdefault(int(m.group(1), 16), m.group(2))
            continue
        m = _MAP_TEXT.match(line)
        if m and int(m.group(2), 16):
            # the object's section start names code no global symbol covers (its statics)
            obj = Path(m.group(3).split("(")[0]).stem
            functions.setdefault(int(m.group(1), 16), f"<{obj}.o>")
    return text_hi if text_lo is not None else None


def _read_nm(path: Path, functions: dict[int, str]) -> None:
    for line in path.read_text(errors="replace").splitlines():
        m = _NM_LINE.match(line.strip())
        if m and not m.group(3).startswith("."):
            functions[int(m.group(1), 16)] = m.group(3)
