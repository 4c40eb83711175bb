"""The rollout page (issue 13 item 2) opened in headless Chromium: what a person sees.

rollout.json is written here as `harness rollout --report` writes it (the issue's --json object
plus started_at, content, timeline, and per machine serial_log, crash_title, deliveries), with
real serial logs captured from the reference guest. The checks read the rendered page: its
text, the computed colours and positions of grid cells and timeline segments, the links, the
requests it made; a screenshot goes to the test's artifacts."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from harness.paths import FIXTURES
from harness.report import render_rollout

from .browser import Browser, greyish, link_target, open_checked, reddish

LOGS = FIXTURES / "logs" / "linux"
CRASH_LOG = LOGS / "cf291-field21-bootloop.log"
HEALTHY_LOG = LOGS / "cf291-field21-hardened.log"
CF291_TITLE = "BUG: unable to handle page fault in chf_match_criterion"
# --fleet vuln:6,hard:2 --rings 2,50%,100%: sizes 2, 2, 4; ring 0 holds both profiles.
FLEET = [("vuln-1", "vuln", 0), ("hard-1", "hard", 0), ("vuln-2", "vuln", 1), ("vuln-3", "vuln", 1),
         ("vuln-4", "vuln", 2), ("vuln-5", "vuln", 2), ("vuln-6", "vuln", 2), ("hard-2", "hard", 2)]
FIRST_DELIVERY = 10.0


def _log(report_dir: Path, name: str, source: Path, outside: Path | None) -> str:
    """Copy a real serial log where a rollout keeps it; the JSON's path is relative to the report
    directory, or absolute for a log kept outside it."""
    base = outside if outside is not None else report_dir / "machines"
    dest = base / name / "serial.log"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return str(dest) if outside is not None else str(dest.relative_to(report_dir))


def _boot(name: str, i: int) -> list[dict[str, Any]]:
    """Every machine boots with the baseline content first, a little staggered."""
    return [{"machine": name, "t": 0.3 * i, "state": "booting", "detail": "baseline boot"},
            {"machine": name, "t": 6.0 + 0.4 * i, "state": "healthy", "detail": "sensor loaded 1 file"}]


def write_bad_rollout(report_dir: Path, outside: Path) -> dict[str, Any]:
    """A CF291-style file: vuln-1 crashes on the spot, loops at its bake reboot, the rollout halts
    at ring 0, hard-1 (which rejected the file) is rolled back online, vuln-1 is recovered by safe
    mode; nothing past ring 0 receives the file; all 8 healthy at the end."""
    timeline: list[dict[str, Any]] = []
    machines = []
    for i, (name, profile, ring) in enumerate(FLEET):
        timeline += _boot(name, i)
        m: dict[str, Any] = {"name": name, "profile": profile, "ring": ring, "delivered": False,
                             "delivered_at": None, "verdict": None, "recovery": None, "final_verdict": "healthy",
                             "crash_title": None, "deliveries": [],
                             "serial_log": _log(report_dir, name, HEALTHY_LOG, outside if name == "hard-2" else None)}
        machines.append(m)
    vuln1, hard1 = machines[0], machines[1]
    vuln1.update(delivered=True, delivered_at=FIRST_DELIVERY, verdict="boot-loop", crash_title=CF291_TITLE,
                 recovery={"path": "safe-mode", "result": "recovered"}, deliveries=[
                     {"t": FIRST_DELIVERY, "ok": True, "error": None}],
                 serial_log=_log(report_dir, "vuln-1", CRASH_LOG, None))
    hard1.update(delivered=True, delivered_at=FIRST_DELIVERY + 0.05, verdict="content-rejected",
                 deliveries=[{"t": FIRST_DELIVERY + 0.05, "ok": True, "error": None}])
    timeline += [
        {"machine": "vuln-1", "t": 10.2, "state": "updated", "detail": "reload with the new file"},
        {"machine": "hard-1", "t": 10.3, "state": "updated", "detail": "rejected the file, stays up"},
        {"machine": "vuln-1", "t": 11.1, "state": "crashed", "detail": CF291_TITLE},
        {"machine": "vuln-1", "t": 17.4, "state": "looping", "detail": "2 crashing boots in a row"},
        {"machine": "hard-1", "t": 12.0, "state": "rolled-back", "detail": "file deleted, sensor reloaded"},
        {"machine": "vuln-1", "t": 18.0, "state": "recovering", "detail": "safe mode"},
        {"machine": "vuln-1", "t": 31.0, "state": "recovered", "detail": "healthy on the last good content"},
    ]
    timeline.sort(key=lambda c: c["t"])
    obj = {"fleet": 8, "rings": [2, 2, 4], "halted": True, "halted_ring": 0,
           "halt_reason": f"crash on vuln-1: {CF291_TITLE}", "blast_radius": 1, "unstaged_blast_radius": 6,
           "halt_signal": {"kind": "crash", "machine": "vuln-1", "t": 11.1, "halted_t": 11.2, "latency_s": 0.1},
           "seconds_to_halt": 1.2, "seconds_to_healthy_fleet": 21.0, "healthy_at_end": 8,
           "machines": machines, "started_at": time.time() - 60, "content": ["C-00000291-00000000-00000032.sys"],
           "timeline": timeline}
    (report_dir / "rollout.json").write_text(json.dumps(obj, indent=2))
    return obj


def write_good_rollout(report_dir: Path) -> dict[str, Any]:
    """A good file: ring after ring, each machine updated, rebooted for the bake, updated again."""
    timeline: list[dict[str, Any]] = []
    machines = []
    for i, (name, profile, ring) in enumerate(FLEET):
        at = FIRST_DELIVERY + 12.0 * ring + 0.05 * i
        timeline += _boot(name, i) + [
            {"machine": name, "t": at + 0.2, "state": "updated", "detail": "reload with the new file"},
            {"machine": name, "t": at + 2.0, "state": "booting", "detail": "bake reboot 1"},
            {"machine": name, "t": at + 8.0, "state": "updated", "detail": "healthy with the new file"}]
        machines.append({"name": name, "profile": profile, "ring": ring, "delivered": True, "delivered_at": at,
                         "verdict": "healthy", "recovery": None, "final_verdict": "healthy", "crash_title": None,
                         "deliveries": [{"t": at, "ok": True, "error": None}],
                         "serial_log": _log(report_dir, name, HEALTHY_LOG, None)})
    timeline.sort(key=lambda c: c["t"])
    obj = {"fleet": 8, "rings": [2, 2, 4], "halted": False, "halted_ring": None, "halt_reason": None,
           "blast_radius": 0, "unstaged_blast_radius": 0, "seconds_to_halt": None,
           "seconds_to_healthy_fleet": 32.5, "healthy_at_end": 8, "machines": machines,
           "started_at": time.time() - 60, "content": ["C-00000291-00000000-00000031.sys"], "timeline": timeline}
    (report_dir / "rollout.json").write_text(json.dumps(obj, indent=2))
    return obj



# --- reading the rendered page -------------------------------------------------------------

PAGE_STATE = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
                                                                  bottom: r.bottom}; };
  return {
    text: document.body.innerText,
    rings: [...document.querySelectorAll('.ring')].map(e => ({ring: +e.dataset.ring, ...box(e)})),
    cells: [...document.querySelectorAll('.cell')].map(e => ({machine: e.dataset.machine, ring: +e.dataset.ring,
        state: e.dataset.state, text: e.innerText, title: e.title, bg: getComputedStyle(e).backgroundColor,
        ...box(e)})),
    segs: [...document.querySelectorAll('.seg')].map(g => { const r = g.querySelector('rect');
        return {machine: g.dataset.machine, state: g.dataset.state, t0: +g.dataset.t0,
                title: g.querySelector('title').textContent, fill: getComputedStyle(r).fill, ...box(r)}; }),
    deliveries: [...document.querySelectorAll('.delivery')].map(g => ({machine: g.dataset.machine,
        t: +g.dataset.t, ...box(g)})),
    halt: [...document.querySelectorAll('.halt-line line')].map(box),
    links: [...document.querySelectorAll('a')].map(a => ({href: a.href, text: a.innerText})),
    blast: [...document.querySelectorAll('#blast .bar')].map(e => box(e)),
  };
})()"""


def test_a_halted_rollout_shows_the_canary_crash_in_ring_0_and_nothing_delivered_past_it(
        browser: Browser, tmp_path: Path, artifacts_dir: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    write_bad_rollout(report, tmp_path / "elsewhere")
    path = render_rollout(report)
    assert path == report / "index.html"
    _page, s = open_checked(browser, path, PAGE_STATE, artifacts_dir / "rollout-halted.png")

    text = s["text"]
    for words in ("Halted at ring 0", CF291_TITLE, "1 of 8 machines crashed", "6 of 8 machines crashed",
                  "1.2 s after the first delivery, 0.10 s after the halting signal",
                  "21.0 s after the first delivery", "8 of 8",
                  "Delivered past the halting ring\nnone"):
        assert words in text, words

    rings = {r["ring"]: r for r in s["rings"]}
    assert sorted(rings) == [0, 1, 2]
    assert rings[0]["bottom"] <= rings[1]["top"] and rings[1]["bottom"] <= rings[2]["top"]
    cells = {c["machine"]: c for c in s["cells"]}
    assert len(cells) == 8
    for name, _profile, ring in FLEET:  # every cell sits inside its ring's row
        cell, row = cells[name], rings[ring]
        assert row["top"] <= cell["top"] and cell["bottom"] <= row["bottom"], (name, cell, row)
    crashed = cells["vuln-1"]
    assert reddish(crashed["bg"]), crashed["bg"]
    assert "looping" in crashed["text"] and "now recovered" in crashed["text"]
    assert CF291_TITLE in crashed["title"]
    assert "rolled-back" in cells["hard-1"]["text"] and not reddish(cells["hard-1"]["bg"])
    for name, _profile, ring in FLEET:
        if ring > 0:  # halted at ring 0: never delivered, grey, and said in words
            assert cells[name]["state"] == "not-delivered" and "not-delivered" in cells[name]["text"]
            assert greyish(cells[name]["bg"]), (name, cells[name]["bg"])

    staged, unstaged = s["blast"]
    assert 0 < staged["right"] - staged["left"] < (unstaged["right"] - unstaged["left"]) / 5

    # Timeline: each machine's segments left to right in time, touching, one row per machine.
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for seg in s["segs"]:
        by_machine.setdefault(seg["machine"], []).append(seg)
    assert sorted(by_machine) == sorted(cells)
    for name, segs in by_machine.items():
        assert [g["t0"] for g in segs] == sorted(g["t0"] for g in segs)
        for a, b in zip(segs, segs[1:]):
            assert a["left"] < b["left"] and abs(a["right"] - b["left"]) < 1.0, (name, a, b)
            assert a["top"] == b["top"]
    vuln1 = by_machine["vuln-1"]
    assert [g["state"] for g in vuln1] == ["booting", "healthy", "updated", "crashed", "looping", "recovering",
                                          "recovered"]
    crash_seg = vuln1[3]
    assert reddish(crash_seg["fill"]) and "crashed from 11.1 s" in crash_seg["title"]
    (halt,) = s["halt"]  # the halt instant: after the crash began, before the loop was seen
    assert crash_seg["left"] <= halt["left"] < vuln1[4]["left"]
    assert {d["machine"] for d in s["deliveries"]} == {"vuln-1", "hard-1"}
    assert all(d["left"] < halt["left"] for d in s["deliveries"])

    logs = {link_target(link["href"]): link for link in s["links"]}
    crash_logs = [p for p in logs if p.read_bytes() == CRASH_LOG.read_bytes()]
    assert crash_logs and all(p.is_relative_to(report) for p in crash_logs)
    assert (tmp_path / "elsewhere" / "hard-2" / "serial.log").resolve() in {p.resolve() for p in logs}


def test_a_good_rollout_reaches_every_ring_in_order_and_crashes_nothing(
        browser: Browser, tmp_path: Path, artifacts_dir: Path) -> None:
    write_good_rollout(tmp_path)
    _page, s = open_checked(browser, render_rollout(tmp_path), PAGE_STATE, artifacts_dir / "rollout-good.png")
    assert "Not halted: the content reached 8 of 8 machines." in s["text"]
    assert "0 of 8 machines crashed" in s["text"] and "No machine crashed." in s["text"]
    assert s["halt"] == []
    assert all(c["state"] == "updated" and not reddish(c["bg"]) and "updated" in c["text"] for c in s["cells"])
    ring_of = {name: ring for name, _p, ring in FLEET}
    marks = sorted(s["deliveries"], key=lambda d: d["left"])
    assert [ring_of[d["machine"]] for d in marks] == sorted(ring_of[d["machine"]] for d in marks)
    assert len(marks) == 8


def test_an_interrupted_rollout_with_nulls_still_renders(tmp_path: Path) -> None:
    """Ctrl-C mid-rollout writes a partial report: most fields null, no timeline yet."""
    obj = {"fleet": 2, "rings": [1, 1], "halted": False, "halted_ring": None, "halt_reason": None,
           "blast_radius": None, "unstaged_blast_radius": None, "seconds_to_halt": None,
           "seconds_to_healthy_fleet": None, "healthy_at_end": None,
           "machines": [{"name": "a", "profile": "vuln", "ring": 0, "delivered": False},
                        {"name": "b", "profile": "vuln", "ring": 1, "delivered": False}]}
    (tmp_path / "rollout.json").write_text(json.dumps(obj))
    html = render_rollout(tmp_path).read_text()
    assert "No timeline was recorded" in html and "not measured" in html
