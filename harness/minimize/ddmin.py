"""Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input",
TSE 2002): the ddmin algorithm over a list, written from the paper.

`test(candidate)` answers True when the candidate still shows the failure ("interesting").
The result is 1-minimal: removing any single element of it makes `test` answer False (as far
as `test` is deterministic).  A budget stops the search early and returns the smallest
interesting list found so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
Test = Callable[[list[T]], bool]


class BudgetExhausted(Exception):
    """Raised by a test function that may not run again; ddmin returns what it has."""


def _split(items: Sequence[T], n: int) -> list[list[T]]:
    """`items` in `n` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        chunks.append(list(items[start:end]))
        start = end
    return [c for c in chunks if c]


def ddmin(items: Sequence[T], test: Test[T], try_empty: bool = True) -> list[T]:
    """Reduce `items` (which must be interesting) to a 1-minimal interesting sublist.

    Each round splits the current list into n chunks and tries every chunk alone, then every
    complement (the list without one chunk); a success restarts with the smaller list (n = 2
    after a chunk, n - 1 after a complement), a round without one doubles n, and the search
    ends when n reaches the list's length with nothing removable.
    """
    current = list(items)
    try:
        if try_empty and current and test([]):
            return []
        n = 2
        while len(current) >= 2:
            chunks = _split(current, n)
            reduced = False
            for chunk in chunks:
                if len(chunks) > 2 and test(chunk):  # with 2 chunks, a chunk is a complement
                    current, n, reduced = chunk, 2, True
                    break
            if not reduced:
                for i in range(len(chunks)):
                    complement = [x for j, c in enumerate(chunks) if j != i for x in c]
                    if test(complement):
                        current, n, reduced = complement, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= len(current):
                    break
                n = min(2 * n, len(current))
    except BudgetExhausted:
        pass
    return current
