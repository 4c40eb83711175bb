"""The campaign page: `campaign.json` (the object `harness campaign --json` prints, issue 12)
as files judged and their rate, verdicts as bars, each unique crash with its reproducer,
minimised file, rerun command and serial log, and every disagreement between the host's
prediction and the machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fields import Fields, load_object, resolve
from .html import badge, count_bars, esc, facts, file_link, legend, page, table
from .states import verdict

VERDICT_KEYS = {"verdict", "vm", "vm_verdict", "machine", "predicted", "prediction", "host", "host_verdict"}
FIX = "write it with harness campaign --json > DIR/campaign.json (docs/report.md lists the fields)"


@dataclass
class Campaign:
    path: Path
    files: int
    files_per_min: float | None
    verdicts: dict[str, int]
    crashes: list[Fields]
    disagreements: list[Fields]
    out: Path | None


def load_campaign(report_dir: Path) -> Campaign:
    path = report_dir / "campaign.json"
    top = Fields(load_object(path, FIX), path, "", FIX)
    counts = top.get("verdicts", dict, True)
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise top.error(f"verdicts.{key}", "an integer (files with that verdict)", value)
    crashes = top.objects("unique_crashes", required=True)
    for crash in crashes:
        crash.get("title", str, True)
        crash.get("count", int)
    return Campaign(path=path, files=top.get("files", int, True), files_per_min=top.get("files_per_min", float),
                    verdicts=counts, crashes=crashes, disagreements=top.objects("disagreements"),
                    out=resolve(report_dir, top.get("out", str)))


def _path(c: Campaign, report_dir: Path, value: Any) -> Path | None:
    """A path of the campaign: relative to the report directory, else to `out`."""
    if not isinstance(value, str) or not value:
        return None
    first = resolve(report_dir, value)
    if first is not None and not first.exists() and c.out is not None and not Path(value).is_absolute():
        second = c.out / value
        return second if second.exists() else first
    return first


def _cell(c: Campaign, report_dir: Path, page_dir: Path, key: str, value: Any) -> str:
    """A disagreement's value: a link when it names an existing file, text otherwise."""
    if isinstance(value, str) and ("/" in value or value.endswith((".sys", ".bin", ".log"))):
        path = _path(c, report_dir, value)
        if path is not None and path.is_file():
            return file_link(path, page_dir, value)
    if isinstance(value, (dict, list)):
        return f"<code>{esc(json.dumps(value, sort_keys=True))}</code>"
    if key in VERDICT_KEYS and isinstance(value, str):
        return badge(verdict(value), value)
    return esc(value)


def _predicted(d: dict[str, Any]) -> str:
    """Each tier's expected verdict (and crash function); the tiers that disagree in bold."""
    lines = []
    tiers = d.get("tiers") if isinstance(d.get("tiers"), list) else []
    for tier, p in (d.get("predicted") or {}).items():
        p = p if isinstance(p, dict) else {"expected": p}
        words = f"{tier}: " + badge(verdict(p.get("expected") or "none"), p.get("expected") or "no verdict")
        if p.get("function"):
            words += f" in <code>{esc(p['function'])}</code>"
        lines.append(f"<b>{words}</b>" if tier in tiers else words)
    return "<br>".join(lines) or "none"


def _structured_row(c: Campaign, report_dir: Path, page_dir: Path, d: dict[str, Any]) -> list[str]:
    """A disagreement as `harness campaign` writes it: file, predicted (per tier), vm, logs."""
    vm = d["vm"]
    crash = vm.get("crash") if isinstance(vm.get("crash"), dict) else None
    machine = badge(verdict(vm.get("verdict")), vm.get("verdict") or "no verdict") + (
        f"<br>{esc(vm.get('reason'))}" if vm.get("reason") else "") + (
        f"<br>{esc(crash.get('title'))}" if crash else "")
    name = d.get("name") or d.get("file") or "?"
    origin = f"<br><small>{esc(d['origin'])}</small>" if d.get("origin") else ""
    logs = "<br>".join(x for x in (file_link(_path(c, report_dir, d.get("serial_log")), page_dir, "serial log"),
                                   file_link(_path(c, report_dir, d.get("artifacts")), page_dir, "artifacts")) if x)
    return [(file_link(_path(c, report_dir, d.get("file")), page_dir, str(name)) or esc(name)) + origin,
            _predicted(d), machine, logs or "none"]


def _disagreements(c: Campaign, report_dir: Path, page_dir: Path) -> str:
    if not c.disagreements:
        return "<p>None: the host's prediction and the machine agreed on every file.</p>"
    if all(isinstance(d.obj.get("vm"), dict) for d in c.disagreements):
        rows = [_structured_row(c, report_dir, page_dir, d.obj) for d in c.disagreements]
        return table(["File", "Predicted (disagreeing tiers in bold)", "Machine", "Logs"], rows, cls="disagreements")
    keys: list[str] = []
    for d in c.disagreements:
        keys += [k for k in d.obj if k not in keys]
    rows = [[_cell(c, report_dir, page_dir, k, d.obj.get(k)) for k in keys] for d in c.disagreements]
    return table(keys, rows, cls="disagreements")


def campaign_html(c: Campaign, report_dir: Path, page_dir: Path) -> str:
    rate = "n/a" if c.files_per_min is None else f"{c.files_per_min:.1f}"
    crashed = sum(int(cr.obj.get("count") or 0) for cr in c.crashes)
    head = facts([("Files judged", str(c.files)), ("Files per minute", rate),
                  ("Unique crashes", f"{len(c.crashes)} ({crashed} crashing file{'' if crashed == 1 else 's'})"),
                  ("Disagreements", str(len(c.disagreements))),
                  ("Out", file_link(c.out, page_dir, str(c.out)) if c.out else "n/a")])
    rows = []
    for cr in c.crashes:
        o = cr.obj
        rerun = o.get("rerun")
        rows.append([esc(o.get("title")), f"<code>{esc(o.get('function') or 'n/a')}</code>",
                     esc(o.get("count") if o.get("count") is not None else "n/a"),
                     file_link(_path(c, report_dir, o.get("reproducer")), page_dir, "reproducer") or "none",
                     file_link(_path(c, report_dir, o.get("minimized")), page_dir, "minimized")
                     or esc("none" + (f": {o['minimized_note']}" if o.get("minimized_note") else "")),
                     file_link(_path(c, report_dir, o.get("serial_log")), page_dir, "serial log") or "none",
                     f"<code>{esc(rerun)}</code>" if rerun else ""])
    crashes = (table(["Crash", "Function", "Files", "Reproducer", "Minimized", "Log", "Rerun"], rows, num={2},
                     cls="crashes") if rows else "<p>No crash.</p>")
    body = (head + "<h2>Verdicts</h2>" + legend(verdict(n) for n in sorted(c.verdicts) if c.verdicts[n])
            + count_bars(c.verdicts, verdict, "file") + "<h2>Unique crashes</h2>" + crashes
            + "<h2>Disagreements (prediction against machine)</h2>" + _disagreements(c, report_dir, page_dir))
    unique = f"{len(c.crashes)} unique crash" + ("" if len(c.crashes) == 1 else "es")
    return page(f"Campaign: {c.files} file{'' if c.files == 1 else 's'}, {unique}", esc(c.path), body)
