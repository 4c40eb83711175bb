"""Find the guilty frame of one report, the way its kind says (see `kind.py`).

`guilty_frame` walks the report's lines (console prefixes already removed,
other CPUs' and tasks' lines left out) and returns the frame the title names,
or None when the report does not show one (cut before its stack, or a stack
made only of frames that are never the bug).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .frames import (CALL_TRACE_RE, STACK_START_RE, Frame, frames_in, hung_task_frame, ip_frame, skip_regex,
                     stall_frame, title_name)
from .kind import Kind

_AT_RE = re.compile(r"\bat: (?:\[<?(?:0x)?[0-9a-f]+>?\]\s+)?(?P<func>[A-Za-z0-9_]+)[.+]")
_PC_LINE_RE = re.compile(r"\[<?(?:0x)?[0-9a-f]+>?\]\s+(?P<func>[A-Za-z0-9_]+)[.+]")


def _stack_after(lines: list[str], start: int, *, enter_trace: bool) -> Iterator[Frame]:
    """Frames from lines[start:] until a stack-trace header.  With `enter_trace`, the
    first header (a `Call Trace:` after a register dump) is stepped into, not stopped at."""
    seen_frame = False
    for line in lines[start:]:
        if STACK_START_RE.search(line):
            if enter_trace and not seen_frame:
                enter_trace = False
                continue
            return
        for frame in frames_in(line):
            if frame.function.startswith("should_fail"):
                return  # a fault injection's own stack dump is mixed in: what follows is not ours
            seen_frame = True
            yield frame


def _first(lines: list[str], start: int, pattern: re.Pattern[str]) -> int | None:
    for index in range(start, len(lines)):
        if pattern.search(lines[index]):
            return index
    return None


def _ip_then_stack(lines: list[str], start: int, with_stack: bool) -> list[Frame]:
    for index in range(start, len(lines)):
        is_ip, frame = ip_frame(lines[index])
        if not is_ip:
            continue
        found = [frame] if frame else []
        if with_stack:
            found += _stack_after(lines, index + 1, enter_trace=True)
        return found
    return []


def _trace(lines: list[str], start: int) -> list[Frame]:
    header = _first(lines, start, CALL_TRACE_RE)
    return [] if header is None else list(_stack_after(lines, header + 1, enter_trace=False))


# What follows the function a head names: `+0x46/0x4f [crashtest]` names its module.
_HEAD_MODULE_RE = re.compile(r"\S*\s+\[(?P<mod>[A-Za-z0-9_]+)\]")


def _head_frame(head: re.Match[str]) -> list[Frame]:
    """The function the head names (group `hf`), with its module when the head prints one."""
    if "hf" not in head.re.groupindex or not head.group("hf"):
        return []
    module = _HEAD_MODULE_RE.match(head.string, head.end("hf"))
    return [Frame(head.group("hf"), module.group("mod") if module else None)]


def candidate_frames(kind: Kind, head: re.Match[str], lines: list[str]) -> tuple[list[Frame], bool]:
    """(frames in the order the kind reads them, whether the skip list applies to them)."""
    locate = kind.locate
    head_frame = _head_frame(head)
    if locate in ("ip", "ip-trace"):
        return _ip_then_stack(lines, 0, locate == "ip-trace"), True
    if locate == "warning":  # the trap's RIP and what follows it; else the stack (WARN prints no RIP before 4.9)
        return _ip_then_stack(lines, 0, True) + _trace(lines, 1), True
    if locate == "trace":
        return _trace(lines, 1), True
    if locate == "head-trace":
        return head_frame + _trace(lines, 1), True
    if locate == "head-frames":
        return head_frame + list(_stack_after(lines, 1, enter_trace=False)), True
    if locate == "head":
        return head_frame, False
    if locate == "frames":
        return list(_stack_after(lines, 1, enter_trace=False)), True
    if locate in ("after", "stall", "at", "at-trace"):
        assert kind.anchor is not None
        anchor = _first(lines, 0, kind.anchor)
        if anchor is None:
            return [], True
        if locate == "after":
            return list(_stack_after(lines, anchor + 1, enter_trace=False)), True
        if locate == "stall":
            return _ip_then_stack(lines, anchor + 1, True) or list(
                _stack_after(lines, anchor + 1, enter_trace=True)), True
        at_index = [i for i in range(anchor + 1, len(lines)) if _AT_RE.search(lines[i])][:2]
        at_lines = [Frame(m.group("func")) for i in at_index if (m := _AT_RE.search(lines[i]))]
        if locate == "at":
            return at_lines[:1], False
        # The two locks' `at:`, then the dependency chain printed after them.
        after = at_index[-1] + 1 if at_index else anchor + 1
        return at_lines + list(_stack_after(lines, after, enter_trace=False)), True
    if locate == "pc":
        pc = next((Frame(m.group("func")) for line in lines[1:] if (m := _PC_LINE_RE.search(line))), None)
        return ([pc] if pc else []), False
    if locate == "ip-line":
        pc_index = next((i for i in range(1, len(lines)) if _PC_LINE_RE.search(lines[i])), None)
        if pc_index is None:
            return [], True
        match = _PC_LINE_RE.search(lines[pc_index])
        assert match is not None
        return [Frame(match.group("func"))] + _trace(lines, pc_index + 1), True
    return [], False


def guilty_frame(kind: Kind, head: re.Match[str], lines: list[str]) -> tuple[Frame | None, list[Frame]]:
    """(the frame the title names, with its name as the title spells it; every frame read)."""
    frames, skipping = candidate_frames(kind, head, lines)
    if skipping:
        skip = skip_regex(kind.skip)
        kept = [frame for frame in frames if not skip.search(frame.function)]
    else:
        kept = frames
    if not kept:
        return None, frames
    if kind.extractor == "first":
        chosen = kept[0]
        return Frame(title_name(chosen.function), chosen.module), frames
    names = [title_name(frame.function) for frame in kept]
    name = stall_frame(names) if kind.extractor == "stall" else hung_task_frame(names)
    if name is None:
        return None, frames
    # The title names the way in; the module says whose code was looping or waiting.
    module = next((f.module for f in kept if f.module), None)
    return Frame(name, module), frames
