"""A campaign's state on disk under --out, so an interrupted campaign continues where it stopped.

    <out>/campaign.params.json   what the campaign is (seed, files or minutes, mutations, corpus,
                                 profile, config, sensor): a rerun must ask for the same
    <out>/files/                 every planned file, as judged (NNNN-<mutation>.sys or NNNN/<name>)
    <out>/judged.jsonl           one JSON line per judged file, appended and flushed per file
    <out>/runs/NNNN/             each file's machine artifacts (serial.log, verdict.json, ...)
    <out>/crashes/NN-<title>/    each unique crash's reproducer and minimised file
    <out>/campaign.json          the summary (`--json` prints the same object)

A file is judged once: on a rerun, the indices in judged.jsonl are skipped. A file whose
judgement was interrupted has no line and is judged again from the start; a file logged as
`infra-error` (its machines failed, not the file) is judged again too, and its later line counts.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import HarnessError, InputFileError

PARAMS = "campaign.params.json"
LOG = "judged.jsonl"


class CampaignState:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.files = out / "files"
        self.runs = out / "runs"
        self.crashes = out / "crashes"
        self.log_path = out / LOG
        self._lock = threading.Lock()

    def open(self, params: dict[str, Any]) -> bool:
        """Create the layout, or check that `params` are the saved ones; True when resuming."""
        saved_path = self.out / PARAMS
        if saved_path.exists():
            try:
                saved = json.loads(saved_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InputFileError(f"--out: {saved_path}: unreadable campaign parameters ({exc}); "
                                     f"use a new --out directory") from None
            diff = [f"{k} {saved.get(k)!r} there, {params.get(k)!r} here"
                    for k in sorted(set(saved) | set(params)) if saved.get(k) != params.get(k)]
            if diff:
                raise InputFileError(f"--out: {self.out} holds a campaign with other parameters ({'; '.join(diff)}): "
                                     f"rerun with its parameters to continue it, or give a new --out directory")
            return True
        if self.out.exists() and not self.out.is_dir():
            raise InputFileError(f"--out: {self.out}: not a directory; give a directory for the campaign's state")
        if self.out.is_dir() and any(self.out.iterdir()):
            raise InputFileError(f"--out: {self.out}: not empty and holds no campaign ({PARAMS} missing); "
                                 f"give a new or empty directory")
        for directory in (self.files, self.runs, self.crashes):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputFileError(f"--out: {directory}: cannot create: {exc.strerror}") from None
        write_json(saved_path, params)
        return False

    def entries(self) -> Iterator[dict[str, Any]]:
        """The judged files, one at a time, in the order they were judged (a torn last line,
        from a process killed mid-write, is not an entry: that file is judged again)."""
        if not self.log_path.exists():
            return
        with open(self.log_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "index" in entry:
                    yield entry

    def final_entries(self) -> Iterator[dict[str, Any]]:
        """The last entry of each file (a file whose machines failed is judged again by a rerun,
        which appends a later line), in log order; two passes, so only line numbers are held."""
        last: dict[int, int] = {}
        for n, entry in enumerate(self.entries()):
            last[entry["index"]] = n
        for n, entry in enumerate(self.entries()):
            if last.get(entry["index"]) == n:
                yield entry

    def judged_indices(self) -> set[int]:
        """The files judged for good: an `infra-error` (the machines failed twice and the
        campaign's waits did not help) is judged again by a rerun."""
        return {entry["index"] for entry in self.final_entries() if entry.get("verdict") != "infra-error"}

    def append(self, entry: dict[str, Any]) -> None:
        """One judged file, on disk before this returns."""
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise HarnessError(f"cannot append to the campaign log: {exc.strerror}: {self.log_path}") from None

    def repair_tail(self) -> None:
        """End the log with a newline, so a line torn by a kill does not swallow the next one."""
        if self.log_path.exists() and self.log_path.stat().st_size:
            with open(self.log_path, "rb+") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
