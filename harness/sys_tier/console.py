"""DbgPrint/DbgPrintEx: the driver's console lines, formatted as the kernel's printf would.

speakeasy's own formatter raised TypeError on `%lu`; this one handles the conversions a
driver uses (%d %i %u %x %X %c %s %p %%, flags, width, precision, the h/l/ll/I64/z sizes).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .kernel import Kernel

_SPEC = re.compile(rb"%([-+ #0]*)(\d+|\*)?(?:\.(\d+|\*))?(hh|h|ll|l|I64|I32|I|z|j|t|w)?([diouxXcsSpZ%])")
MAX_LINES = 10_000


def format_printf(fmt: bytes, next_arg: Callable[[], int], read_cstring: Callable[[int], bytes]) -> str:
    out: list[str] = []
    pos = 0
    for m in _SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()].decode("latin-1"))
        pos = m.end()
        flags, width, precision, size, conv = (g.decode() if g else "" for g in m.groups())
        if conv == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(next_arg() & 0xFFFFFFFF)
        if precision == "*":
            precision = str(next_arg() & 0xFFFFFFFF)
        value = next_arg()
        if conv in "di":
            bits = 64 if size in ("ll", "I64", "I", "z", "j", "t") else 32
            value &= (1 << bits) - 1
            if value >> (bits - 1):
                value -= 1 << bits
            text = f"{value}"
        elif conv in "ouxX":
            bits = 64 if size in ("ll", "I64", "I", "z", "j", "t") else 32
            value &= (1 << bits) - 1
            text = {"o": f"{value:o}", "u": f"{value}", "x": f"{value:x}", "X": f"{value:X}"}[conv]
            if "#" in flags and value and conv in "xX":
                text = ("0x" if conv == "x" else "0X") + text
        elif conv == "c":
            text = chr(value & 0xFF)
        elif conv == "p":
            text = f"{value:016X}"
        elif conv == "s" and size != "w":
            raw = read_cstring(value) if value else b"(null)"
            text = raw.decode("utf-8", "replace")
            if precision:
                text = text[:int(precision)]
        else:  # %S, %ws, %Z: wide and counted strings are not used by the sample driver
            text = f"<{conv}@{value:#x}>"
        if width and len(text) < int(width):
            pad = "0" if "0" in flags and "-" not in flags and conv not in "sc" else " "
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), pad)
        out.append(text)
    out.append(fmt[pos:].decode("latin-1"))
    return "".join(out)


class Console:
    """Collects every DbgPrint/DbgPrintEx line of the driver."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.lines: list[str] = []
        self._partial = ""

    def install(self) -> None:
        self.kernel.hook("ntoskrnl", "DbgPrintEx", 3, lambda a: self._print(a, 2))
        self.kernel.hook("ntoskrnl", "DbgPrint", 1, lambda a: self._print(a, 0))

    def _print(self, a: list[int], fmt_index: int) -> int:
        k = self.kernel
        index = fmt_index + 1

        def next_arg() -> int:
            nonlocal index
            value = k.args(index + 1)[index]
            index += 1
            return value

        text = format_printf(k.read_cstring(a[fmt_index]), next_arg, k.read_cstring)
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.lines.extend(done[:MAX_LINES - len(self.lines)])
        return 0

    def flush(self) -> list[str]:
        if self._partial:
            self.lines.append(self._partial)
            self._partial = ""
        return self.lines
