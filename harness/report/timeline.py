"""The rollout's timeline as inline SVG: time across, machines down (grouped by ring), one
coloured segment per state, delivery marks, and the halt and healthy-fleet instants.

Every segment has a <title> (its state, its span, the detail) and, where it is wide enough,
its state written in it, so the picture reads without colour.
"""

from __future__ import annotations

from .html import esc
from .rollout_input import Rollout, RolloutMachine
from .states import state

LABEL_W, PLOT_W, ROW_H, RING_H, TOP, BOTTOM = 200, 880, 22, 18, 22, 30
STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 3600)


def _step(end: float) -> float:
    return next((s for s in STEPS if end / s <= 12), STEPS[-1])


def _segments(machine: RolloutMachine, end: float) -> list[tuple[float, float, str, str]]:
    """(t0, t1, state, detail) of each state the machine was in, up to `end`."""
    changes = machine.changes
    return [(c.t, changes[i + 1].t if i + 1 < len(changes) else end, c.state, c.detail)
            for i, c in enumerate(changes)]


def render_timeline(rollout: Rollout, ordered: list[RolloutMachine]) -> str:
    end = rollout.end()
    if not rollout.timeline or end <= 0:
        return "<p>No timeline was recorded (the rollout stopped before any machine booted).</p>"
    end *= 1.02  # room for the last segment's right edge

    def x(t: float) -> float:
        return LABEL_W + max(0.0, min(t, end)) / end * PLOT_W

    parts: list[str] = []
    y = TOP
    ring = None
    for m in ordered:
        if m.ring != ring:
            ring = m.ring
            halted = " (halted here)" if rollout.halted and rollout.halted_ring == ring else ""
            parts.append(f'<text x="4" y="{y + RING_H - 5}" font-size="12" font-weight="bold">ring {ring}{halted}'
                         f'</text><line x1="0" x2="{LABEL_W + PLOT_W}" y1="{y + 1}" y2="{y + 1}" stroke="#d0d7de"/>')
            y += RING_H
        parts.append(f'<text x="12" y="{y + ROW_H - 7}" font-size="12">{esc(m.name)}'
                     f'<tspan fill="#57606a"> {esc(m.profile)}</tspan></text>')
        for t0, t1, name, detail in _segments(m, end):
            sw = state(name)
            x0, x1 = x(t0), x(t1)
            tip = f"{m.name}: {name} from {t0:.1f} s to {t1:.1f} s" + (f" ({detail})" if detail else "")
            parts.append(f'<g class="seg" data-machine="{esc(m.name)}" data-state="{esc(name)}" '
                         f'data-t0="{t0:.3f}" data-t1="{t1:.3f}"><title>{esc(tip)}</title>'
                         f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1.5):.1f}" height="{ROW_H - 6}" '
                         f'fill="{sw.fill}" stroke="rgba(0,0,0,.25)" stroke-width="0.5"/>')
            if x1 - x0 > 6.6 * len(name) + 6:
                parts.append(f'<text x="{x0 + 3:.1f}" y="{y + ROW_H - 7}" font-size="10.5" '
                             f'fill="{sw.ink}">{esc(name)}</text>')
            parts.append("</g>")
        for d in m.deliveries:
            xd = x(d.t)
            what = "delivered" if d.ok else f"delivery failed: {d.error or 'no reason given'}"
            mark = (f'<path d="M{xd - 4:.1f},{y} L{xd + 4:.1f},{y} L{xd:.1f},{y + 7} Z" fill="#1f2328"/>' if d.ok
                    else f'<path d="M{xd - 4:.1f},{y} L{xd + 4:.1f},{y + 8} M{xd + 4:.1f},{y} L{xd - 4:.1f},{y + 8}" '
                         'stroke="#d9342b" stroke-width="2"/>')
            parts.append(f'<g class="delivery" data-machine="{esc(m.name)}" data-t="{d.t:.3f}" '
                         f'data-ok="{str(d.ok).lower()}"><title>{esc(m.name)}: {esc(what)} at {d.t:.1f} s'
                         f'</title>{mark}</g>')
        y += ROW_H
    height = y + BOTTOM
    first = rollout.first_delivery() or 0.0
    for span, label, colour, cls in ((rollout.seconds_to_halt, "halt", "#d9342b", "halt-line"),
                                     (rollout.seconds_to_healthy_fleet, "fleet healthy", "#2e7d32",
                                      "healthy-line")):
        if span is None or (cls == "halt-line" and not rollout.halted):
            continue
        xl = x(first + span)
        right = xl > LABEL_W + 0.8 * PLOT_W  # the label to the left of the line, inside the picture
        anchor = f'x="{xl - 3:.1f}" text-anchor="end"' if right else f'x="{xl + 3:.1f}"'
        parts.append(f'<g class="{cls}" data-t="{first + span:.3f}"><title>{label} at {first + span:.1f} s '
                     f'({span:.1f} s after the first delivery)</title>'
                     f'<line x1="{xl:.1f}" x2="{xl:.1f}" y1="{TOP - 6}" y2="{y}" stroke="{colour}" '
                     f'stroke-width="1.5" stroke-dasharray="5,3"/><text {anchor} y="{TOP - 8}" '
                     f'font-size="11" fill="{colour}">{label} +{span:.1f} s</text></g>')
    step = _step(end)
    tick = 0.0
    while tick <= end:
        xt = x(tick)
        parts.append(f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{y}" y2="{y + 5}" stroke="#57606a"/>'
                     f'<text x="{xt:.1f}" y="{y + 17}" font-size="10.5" text-anchor="middle" '
                     f'fill="#57606a">{tick:g} s</text>')
        tick += step
    parts.append(f'<line x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{y}" y2="{y}" stroke="#57606a"/>')
    return (f'<svg class="timeline" role="img" aria-label="timeline of every machine" '
            f'width="{LABEL_W + PLOT_W + 10}" height="{height}" viewBox="0 0 {LABEL_W + PLOT_W + 10} {height}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')
