"""The rollout page: the outcome in one line, the fleet as a grid of machines by ring, the
timeline, the blast radius against an unstaged push, each crash with its serial log, and a
table of every machine."""

from __future__ import annotations

from pathlib import Path

from .html import bar as draw_bar, esc, facts, file_link, legend, page, seconds, table, utc
from .rollout_input import Rollout, RolloutMachine
from .states import OUTCOME_ORDER, STATES, VERDICT_STATE, state
from .timeline import render_timeline


def outcome(m: RolloutMachine) -> str:
    """What the update did to the machine, as the grid colours it (see OUTCOME_ORDER)."""
    if not m.delivered and not any(d.ok for d in m.deliveries):
        return "not-delivered"
    seen = {c.state for c in m.changes}
    for name in OUTCOME_ORDER:
        if name in seen:
            return name
    return VERDICT_STATE.get(m.verdict or "", "updated")


def final_state(m: RolloutMachine) -> str | None:
    return m.changes[-1].state if m.changes else m.final_verdict


def ordered(rollout: Rollout) -> list[RolloutMachine]:
    return sorted(rollout.machines, key=lambda m: m.ring)  # stable: the JSON's order within a ring


def _headline(r: Rollout) -> str:
    reached = sum(1 for m in r.machines if outcome(m) != "not-delivered")
    partial = ("<p><b>Interrupted:</b> the rollout was stopped (Ctrl-C) before it finished; this is the "
               "partial report.</p>") if r.interrupted else ""
    if r.halted:
        ring = "?" if r.halted_ring is None else r.halted_ring
        text = (f"Halted at ring {ring}: {r.halt_reason or 'no reason recorded'}. "
                f"The content reached {reached} of {r.fleet} machines.")
        return f'<div class="verdict-box bad" id="outcome">{esc(text)}</div>{partial}'
    text = f"Not halted: the content reached {reached} of {r.fleet} machines."
    return f'<div class="verdict-box good" id="outcome">{esc(text)}</div>{partial}'


def _summary(r: Rollout) -> str:
    past = [m.name for m in r.machines if r.halted and r.halted_ring is not None and m.ring > r.halted_ring
            and (m.delivered or any(d.ok for d in m.deliveries))]
    healthy = "n/a" if r.healthy_at_end is None else f"{r.healthy_at_end} of {r.fleet}"
    rows = [("Fleet", f"{r.fleet} machines in {len(r.rings) or 'n/a'} rings (sizes "
                      f"{esc(', '.join(map(str, r.rings)) or 'n/a')})"),
            ("Content", esc(", ".join(r.content) or "n/a")),
            ("Started", esc(utc(r.started_at))),
            ("Halted", "yes, at ring " + esc(r.halted_ring) if r.halted else "no"),
            ("Time to halt", esc(seconds(r.seconds_to_halt) + (" after the first delivery"
                                                               if r.seconds_to_halt is not None else "")
                                 + (f", {r.halt_latency:.2f} s after the halting signal"
                                    if r.halt_latency is not None else ""))),
            ("Time to healthy fleet", esc(seconds(r.seconds_to_healthy_fleet)
                                          + (" after the first delivery"
                                             if r.seconds_to_healthy_fleet is not None else ""))),
            ("Healthy at end", esc(healthy))]
    if r.halted:
        rows.append(("Delivered past the halting ring", esc(", ".join(past)) if past else "none"))
    return facts(rows)


def _cell(m: RolloutMachine, page_dir: Path) -> str:
    shown, final = outcome(m), final_state(m)
    sw = state(shown)
    now = f"now {final}" if final and final != shown else ""
    verdict = f"verdict {m.verdict}" + (f" ({m.verdict_reason})" if m.verdict_reason else "") if m.verdict else ""
    rollback = f"rolled back {m.rollback}" if m.rollback else ""
    words = " · ".join(w for w in (verdict, rollback, m.recovery or "") if w)
    tip = f"{m.name} ({m.profile}, ring {m.ring}): {shown}" + (f", {now}" if now else "") + (
        f"; {words}" if words else "") + (f"; {m.crash_title}" if m.crash_title else "")
    log = file_link(m.serial_log, page_dir, "serial log") if m.serial_log else ""
    return (f'<div class="cell" data-machine="{esc(m.name)}" data-ring="{m.ring}" data-state="{esc(shown)}" '
            f'title="{esc(tip)}" style="background:{sw.fill};color:{sw.ink}"><b>{esc(m.name)}</b> '
            f'<span>{esc(m.profile)}</span><br><span class="state-label">{esc(shown)}</span>'
            f'{"<br>" + esc(now) if now else ""}{"<br>" + log if log else ""}</div>')


def _grid(r: Rollout, page_dir: Path) -> str:
    rings = sorted({m.ring for m in r.machines} | set(range(len(r.rings))))
    rows = []
    for ring in rings:
        members = [m for m in r.machines if m.ring == ring]
        halted = r.halted and r.halted_ring == ring
        size = f"{len(members)} machine{'s' if len(members) != 1 else ''}"
        note = "<small>halted here</small>" if halted else ""
        rows.append(f'<div class="ring{" halted" if halted else ""}" data-ring="{ring}">'
                    f'<div class="ring-label">Ring {ring}<small>{size}</small>{note}</div>'
                    f'<div class="cells">{"".join(_cell(m, page_dir) for m in members)}</div></div>')
    return "".join(rows)


def _blast(r: Rollout) -> str:
    scale = max(r.fleet, r.blast_radius or 0, r.unstaged_blast_radius or 0, 1)
    rows = []
    crashed = STATES["crashed"]
    how = {"estimated": ", estimated", "measured": ", measured"}.get(r.unstaged_method or "", "")
    for cls, label, value in (("staged", "Staged rollout (this run)", r.blast_radius),
                              ("unstaged", f"Unstaged push (all at once{how})", r.unstaged_blast_radius)):
        if value is None:
            bar = '<span style="padding:0 6px">not measured</span>'
        else:
            bar = draw_bar(100.0 * value / scale, crashed, f"{value} of {r.fleet} machines crashed")
        rows.append(f'<div class="bar-row" data-blast="{cls}" data-value="{esc(value)}">'
                    f'<div class="bar-label">{label}</div><div class="bar-track">{bar}</div></div>')
    note = ("<p>The unstaged figure applies what the content did to each profile in the rings it reached "
            "to the whole fleet's count of that profile.</p>" if r.unstaged_method == "estimated" else "")
    return f'<div class="bars" id="blast">{"".join(rows)}</div>{note}'


def _crashes(r: Rollout, page_dir: Path) -> str:
    crashed = [m for m in r.machines if m.crash_title]
    if not crashed:
        return "<p>No machine crashed.</p>"
    rows = [[esc(m.crash_title), esc(m.name), esc(m.profile), str(m.ring), esc(m.verdict or "n/a"),
             esc(m.recovery or "none"), file_link(m.serial_log, page_dir, "serial log") or "no log recorded"]
            for m in crashed]
    return table(["Crash", "Machine", "Profile", "Ring", "Verdict", "Recovery", "Log"], rows, cls="crashes")


def _machines(r: Rollout, page_dir: Path) -> str:
    rows = []
    for m in ordered(r):
        at = seconds(m.delivered_at) if m.delivered_at is not None else ""
        failed = [d for d in m.deliveries if not d.ok]
        delivered = ("yes" + (f" at {at}" if at else "")) if m.delivered else "no"
        if failed:
            delivered += "; failed: " + "; ".join(f"{d.t:.1f} s {d.error or ''}".strip() for d in failed)
        rows.append([esc(m.name), esc(m.profile), str(m.ring), esc(delivered), esc(m.verdict or "n/a"),
                     esc(m.rollback or "none"), esc(m.recovery or "none"), esc(m.final_verdict or "n/a"),
                     file_link(m.serial_log, page_dir, "serial log") or "none"])
    return table(["Machine", "Profile", "Ring", "Delivered", "Verdict", "Rollback", "Recovery", "Final verdict",
                  "Log"],
                 rows, num={2}, cls="machines")


def rollout_html(r: Rollout, page_dir: Path) -> str:
    grid_states = [STATES[n] for n in ("not-delivered", "updated", "crashed", "looping", "rolled-back",
                                       "recovered", "infra-error")]
    line_states = [STATES[n] for n in ("booting", "healthy", "updated", "crashed", "looping", "recovering",
                                       "recovered", "rolled-back", "infra-error")]
    body = (_headline(r) + _summary(r)
            + "<h2>Fleet by ring</h2><p>Each cell is a machine, coloured by what the update did to it; "
              "its current state is written under it.</p>" + legend(grid_states) + _grid(r, page_dir)
            + "<h2>Blast radius</h2>" + _blast(r)
            + "<h2>Timeline</h2><p>Time since the start of the rollout; a triangle marks a delivery, "
              "a cross a failed one.</p>" + legend(line_states) + render_timeline(r, ordered(r))
            + "<h2>Crashes</h2>" + _crashes(r, page_dir)
            + "<h2>Machines</h2>" + _machines(r, page_dir))
    title = "Rollout: " + ("halted" if r.halted else "not halted")
    return page(title, f"{esc(r.path)} · content {esc(', '.join(r.content) or 'n/a')}", body)
