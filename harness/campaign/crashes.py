"""Unique crashes of a campaign: grouped by normalised title, each with its first file as the
reproducer, the `harness reproduce` command that replays it, and a minimised file.

Grouping uses the syzkaller normalisation of harness/crash/report.py (offsets, addresses,
line and CPU numbers folded), so one bug at different addresses is one group. Groups are
built by streaming the campaign log, never holding more than one entry per group.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..content.files import write_content_file
from ..crash.report import normalize_title
from ..errors import InputFileError
from ..minimize.minimizer import minimize_on_host

MINIMIZED_JSON = "minimized.json"


@dataclass
class CrashGroup:
    key: str  # the normalised title
    title: str
    function: str | None
    module: str | None
    first: dict[str, Any]  # the log entry of the first file with this crash
    count: int = 0
    indices: list[int] = field(default_factory=list)


def group_key(crash: dict[str, Any]) -> str:
    return normalize_title(crash.get("title") or "") or f"untitled crash in {crash.get('function')}"


def group_crashes(entries: Iterable[dict[str, Any]]) -> list[CrashGroup]:
    """The unique crashes in `entries`, in order of first appearance."""
    groups: dict[str, CrashGroup] = {}
    for entry in entries:
        crash = entry.get("crash")
        if not crash:
            continue
        key = group_key(crash)
        group = groups.get(key)
        if group is None:
            group = groups[key] = CrashGroup(key, crash.get("title") or key, crash.get("function"),
                                             crash.get("module"), entry)
        group.count += 1
        group.indices.append(entry["index"])
    return list(groups.values())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "crash"


class CrashKeeper:
    """Writes each group's directory under <out>/crashes and describes it for the summary."""

    def __init__(self, crashes_dir: Path, build: str, rerun_flags: list[str], vendor: bool) -> None:
        self.dir = crashes_dir
        self.build = build
        self.rerun_flags = rerun_flags  # --profile P [--config F] --sensor B
        self.vendor = vendor

    def record(self, number: int, group: CrashGroup) -> dict[str, Any]:
        first = group.first
        source = Path(first["file"])
        home = self.dir / f"{number:02d}-{_slug(group.key)}"
        home.mkdir(parents=True, exist_ok=True)
        reproducer = home / source.name  # the stored name: the driver sees the same file name
        if not reproducer.exists():
            shutil.copyfile(source, reproducer)
        minimized, note = self._minimized(home, reproducer, group)
        rerun = shlex.join(["harness", "reproduce", str(reproducer), *self.rerun_flags])
        return {"title": group.title, "normalized_title": group.key, "function": group.function,
                "module": group.module, "count": group.count, "first_file": first["index"],
                "files": group.indices, "reproducer": str(reproducer),
                "minimized": str(minimized) if minimized else None,
                **({"minimized_note": note} if note else {}), "rerun": rerun,
                "serial_log": first.get("serial_log"), "artifacts": first.get("artifacts")}

    def _minimized(self, home: Path, reproducer: Path, group: CrashGroup) -> tuple[Path | None, str | None]:
        """Minimise on the host build when it predicts this crash (same function as the VM's);
        done once per group, remembered in minimized.json for a resumed campaign."""
        done = home / MINIMIZED_JSON
        if done.exists():
            saved = json.loads(done.read_text())
            return (Path(saved["path"]) if saved.get("path") else None), saved.get("note")
        path, note = self._minimize(home, reproducer, group)
        write_json(done, {"path": str(path) if path else None, "note": note})
        return path, note

    def _minimize(self, home: Path, reproducer: Path, group: CrashGroup) -> tuple[Path | None, str | None]:
        if self.vendor:
            return None, ("a vendor driver has no host build to minimise with; `harness minimize "
                          f"{reproducer} -o OUT` with this profile boots a machine for every step")
        host = (group.first.get("prediction") or {}).get("host") or {}
        if host.get("outcome") != "crash":
            return None, (f"the {self.build} host build does not crash on the reproducer ({host.get('outcome')}); "
                          f"`harness minimize {reproducer} -o OUT` lets the VM judge every step")
        if host.get("function") != group.function:
            return None, (f"the host build crashes in {host.get('function')}, the VM in {group.function}: "
                          f"the host cannot stand in for the VM; `harness minimize {reproducer} -o OUT` uses the VM")
        try:
            result = minimize_on_host(reproducer.read_bytes(), self.build)
        except InputFileError as exc:
            return None, f"the host build did not reproduce the crash on a rerun: {exc}"
        out = home / "minimized" / reproducer.name
        out.parent.mkdir(exist_ok=True)
        write_content_file(out, result.data)
        write_json(home / "culprit.json", {"culprit": result.culprit, "host_runs": result.host_runs,
                                           "passes": result.passes, "input_bytes": reproducer.stat().st_size,
                                           "output_bytes": len(result.data)})
        return out, None
