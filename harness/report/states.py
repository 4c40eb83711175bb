"""The report's colours: one per machine state and per verdict, each with a text label.

Every coloured thing on the page also carries its label (a word in the cell or bar, a
`title`), so a state reads without colour too; the legend lists the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Swatch:
    name: str   # the state or verdict as the JSON spells it
    fill: str   # background colour
    ink: str    # text colour on that background
    meaning: str


def _s(name: str, fill: str, ink: str, meaning: str) -> Swatch:
    return Swatch(name, fill, ink, meaning)


# The machine states of a rollout's timeline (issue 13), plus the grid's "not-delivered".
STATES: dict[str, Swatch] = {s.name: s for s in (
    _s("booting", "#cfd8dc", "#1c2529", "boots before the update, or reboots"),
    _s("healthy", "#a5d6a7", "#123d14", "runs the baseline (last good) content"),
    _s("updated", "#64b5f6", "#0b2a45", "runs the new content, healthy"),
    _s("crashed", "#d9342b", "#ffffff", "crashed (kernel panic, bugcheck)"),
    _s("looping", "#7f1d1d", "#ffffff", "boot loop: crashes at every boot"),
    _s("recovering", "#f0a530", "#3a2400", "being recovered (safe mode, recovery environment)"),
    _s("recovered", "#2e7d32", "#ffffff", "recovered, healthy on the last good content"),
    _s("rolled-back", "#8e6cc4", "#ffffff", "content withdrawn online, healthy"),
    _s("infra-error", "#757575", "#ffffff", "lost to the host (never counted as a crash)"),
    _s("not-delivered", "#eeeeee", "#424242", "never received the content (rollout halted before it)"),
)}

# What a machine did with the update, most telling first: the grid colours a cell by the first
# of these its timeline reached (a machine that looped and was recovered shows as looping,
# with "now recovered" written in it).
OUTCOME_ORDER = ("looping", "crashed", "infra-error", "rolled-back", "updated", "recovered",
                 "recovering", "healthy", "booting")

# Verdicts of a machine, a campaign file or a test (harness.monitor.verdict).
VERDICTS: dict[str, Swatch] = {s.name: s for s in (
    _s("healthy", "#a5d6a7", "#123d14", "booted, the sensor loaded the content"),
    _s("content-rejected", "#64b5f6", "#0b2a45", "the sensor refused the file, the machine stayed up"),
    _s("crashed", "#d9342b", "#ffffff", "the machine crashed"),
    _s("boot-loop", "#7f1d1d", "#ffffff", "crashed at every boot with the file on disk"),
    _s("hang", "#f0a530", "#3a2400", "no progress within the hang timeout"),
    _s("infra-error", "#757575", "#ffffff", "the host failed, not the product"),
    _s("none", "#ffffff", "#424242", "no verdict recorded"),
)}
OTHER = Swatch("other", "#e0e0e0", "#212121", "any other verdict")

# A machine's verdict as a timeline state (when a rollout has no timeline for it).
VERDICT_STATE = {"healthy": "updated", "content-rejected": "updated", "rejected": "updated", "crashed": "crashed",
                 "boot-loop": "looping", "hang": "crashed", "infra-error": "infra-error"}


def state(name: str | None) -> Swatch:
    return STATES.get(name or "", OTHER)


def verdict(name: str | None) -> Swatch:
    if name == "rejected":  # the rollout's --halt-on word for content-rejected
        name = "content-rejected"
    return VERDICTS.get(name or "none", OTHER)
