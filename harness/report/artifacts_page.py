"""The page of a pytest run's artifacts directory (or a whole artifacts root, or one test's
directory): one row per machine directory, i.e. each directory the harness wrote a machine's
files into (harness/artifacts.py, Machine.write_verdict: verdict.json, serial.log or com1.log,
events.jsonl, domain.log, domain.xml, repro.txt, content/).

A row has the test, the verdict (with its reason and boots), the crash title and function,
the recovery results and links to every log. A directory with a console log but no
verdict.json is a machine that never reached a verdict (a test that did not wait for one, or
an interrupted run): it is listed as such, never dropped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputFileError
from .html import badge, count_bars, esc, facts, file_link, legend, page, table
from .states import verdict

MACHINE_FILES = ("verdict.json", "serial.log", "com1.log")
CRASH_VERDICTS = ("crashed", "boot-loop")
EVENTS_MAX_BYTES = 8 << 20
MAX_DEPTH = 6  # root / run / test / machine ... (a campaign's retry/ sits one deeper)
SKIP_DIRS = {"content", "removed", "__pycache__"}
LOGS = (("serial log", "serial.log"), ("COM1", "com1.log"), ("COM2 markers", "com2.log"),
        ("events", "events.jsonl"), ("verdict", "verdict.json"), ("domain log", "domain.log"),
        ("domain XML", "domain.xml"))


@dataclass
class MachineDir:
    path: Path
    rel: str
    test: str
    verdict: dict[str, Any] | None
    rerun: str | None
    note: str | None  # infra-error.txt, or why verdict.json could not be read
    history: list[tuple[str, str]]  # every verdict of the machine's life (events.jsonl), oldest first
    crash_events: int  # crashes libvirt reported over its life (a recovered machine's included)

    @property
    def crashed(self) -> bool:
        """Crashed at any time: verdict.json keeps only the last verdict (after a recovery,
        healthy), events.jsonl every one."""
        return bool(self.crash_events) or isinstance((self.verdict or {}).get("crash"), dict) or any(
            name in CRASH_VERDICTS for name, _reason in self.history)


def is_machine_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in MACHINE_FILES)


def find_machine_dirs(root: Path) -> list[Path]:
    found = []
    base = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if len(here.parts) - base >= MAX_DEPTH:
            dirnames[:] = []
        if is_machine_dir(here):
            found.append(here)
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def read_events(path: Path) -> tuple[list[tuple[str, str]], int]:
    """(verdicts in order, crash events) from a machine's events.jsonl; a torn last line (a run
    killed mid-write) or a missing file gives what could be read."""
    history: list[tuple[str, str]] = []
    crashes = 0
    try:
        with open(path / "events.jsonl", encoding="utf-8", errors="replace") as handle:
            lines = handle.read(EVENTS_MAX_BYTES).splitlines()
    except OSError:
        return history, crashes
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        name = event.get("event", "") if isinstance(event, dict) else ""
        if name == "harness:verdict":
            history.append((str(event.get("verdict")), str(event.get("reason") or "")))
        elif name.startswith("lifecycle:crashed"):
            crashes += 1
    return history, crashes


def load_machine_dir(path: Path, root: Path) -> MachineDir:
    rel = str(path.relative_to(root)) if path != root else path.name
    note = _read(path / "infra-error.txt")
    data = None
    if (path / "verdict.json").is_file():
        try:
            data = json.loads((path / "verdict.json").read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            data, note = None, f"verdict.json unreadable: {exc}"
    repro = _read(path / "repro.txt")
    test = path.name
    if repro and repro.startswith("pytest "):
        test = repro.split()[1]
    history, crash_events = read_events(path)
    return MachineDir(path=path, rel=rel, test=test, verdict=data, rerun=repro, note=note, history=history,
                      crash_events=crash_events)


def load_artifacts(root: Path) -> list[MachineDir]:
    dirs = find_machine_dirs(root)
    if not dirs:
        raise InputFileError(f"{root}: no machine artifacts under it (a directory holding verdict.json, "
                             "serial.log or com1.log): give a pytest artifacts directory, or a report "
                             "directory with rollout.json or campaign.json")
    return [load_machine_dir(d, root) for d in dirs]


def _recovery(v: dict[str, Any]) -> str:
    rec = v.get("recovery")
    if not isinstance(rec, dict) or not rec:
        return "none"
    parts = []
    for path, r in rec.items():
        if isinstance(r, dict):
            parts.append(f"{path}: {r.get('result', '?')}" + (f" ({r['reason']})" if r.get("reason") else ""))
        else:
            parts.append(f"{path}: {r}")
    return "; ".join(parts)


def _serial(m: MachineDir) -> list[tuple[str, Path]]:
    links = [(label, m.path / name) for label, name in LOGS if (m.path / name).is_file()]
    logged = (m.verdict or {}).get("serial_log")
    if isinstance(logged, str) and logged and not any(p == Path(logged) for _l, p in links):
        links.insert(0, ("serial log", Path(logged)))  # where the machine said it wrote it
    return links


def _row(m: MachineDir, page_dir: Path) -> list[str]:
    v = m.verdict or {}
    name = v.get("verdict") if m.verdict else None
    sw = verdict(name)
    crash = v.get("crash") if isinstance(v.get("crash"), dict) else None
    reason = v.get("reason") or (m.note if not m.verdict else "") or ""
    if m.note and m.verdict:
        reason += f" (first attempt: {m.note})"
    crashing = v.get("crashing_boots") or 0
    boots = (f"{v.get('boots')}" + (f" ({crashing} crashing)" if crashing else "")) if m.verdict else ""
    label = name or "no verdict"
    crash_words = esc(crash.get("title")) + (f"<br><code>{esc(crash.get('function'))}</code>"
                                             if crash.get("function") else "") if crash else ""
    cell = (f'<span class="badge" data-state="{esc(sw.name)}" title="{esc(label)}: {esc(sw.meaning)}" '
            f'style="background:{sw.fill};color:{sw.ink}">{esc(label)}</span>')
    if len(m.history) > 1:
        steps = " → ".join(badge(verdict(n), n) for n, _reason in m.history)
        cell += f'<br><small class="history">over its life: {steps}</small>'
    if m.crashed and not crash:
        crash_words = "crashed earlier (see the serial log)"
    logs = "<br>".join(file_link(p, page_dir, lbl) for lbl, p in _serial(m))
    where = f'<span class="mono wrap" title="{esc(m.path)}">{esc(m.rel)}</span>'
    return [f'<b class="wrap">{esc(m.test)}</b><br>{where}', cell, esc(reason), esc(boots), crash_words,
            esc(_recovery(v)), esc(v.get("profile") or ""), logs]


def _crash_summary(crashed: list[MachineDir], page_dir: Path) -> str:
    """Each crash title once, with the machines that hit it (as pytest's "crashes seen")."""
    if not crashed:
        return "<p>No machine crashed.</p>"
    groups: dict[str, list[MachineDir]] = {}
    for m in crashed:
        crash = (m.verdict or {}).get("crash")
        title = crash.get("title") if isinstance(crash, dict) else None
        groups.setdefault(title or "(crashed earlier; the title is in the serial log)", []).append(m)
    rows = []
    for title, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        where = "<br>".join(file_link(next((p for _l, p in _serial(m)), None), page_dir, m.test) or esc(m.test)
                            for m in members)
        rows.append([esc(title), str(len(members)), where])
    return table(["Crash", "Machines", "Tests (serial logs)"], rows, num={1}, cls="crash-summary")


def artifacts_html(root: Path, machines: list[MachineDir], page_dir: Path) -> str:
    counts = Counter((m.verdict or {}).get("verdict") or "none" for m in machines)
    crashes = [m for m in machines if m.crashed]
    head = facts([("Directory", esc(root)), ("Machines", str(len(machines))),
                  ("Crashes", str(len(crashes)))])
    rows = [_row(m, page_dir) for m in sorted(machines, key=lambda m: m.rel)]
    body = (head + "<h2>Verdicts</h2>" + legend(verdict(n) for n in sorted(counts))
            + count_bars(dict(counts), verdict, "machine")
            + "<h2>Crashes</h2>" + _crash_summary(crashes, page_dir)
            + "<h2>Tests and machines</h2>"
            + table(["Test / directory", "Verdict", "Reason", "Boots", "Crash", "Recovery", "Profile", "Logs"],
                    rows, cls="runs"))
    many = "" if len(machines) == 1 else "s"
    return page(f"Test run: {len(machines)} machine{many}, {len(crashes)} crashed", esc(root), body)
