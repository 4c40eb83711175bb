"""Blast radius: the machines an update crashed, against what pushing it to the whole fleet at
once would have crashed.

The staged figure counts machines whose verdict after the update is crashed, boot-loop or hang
(never infra-error: a machine lost to the host says nothing about the content). The unstaged
figure is estimated per profile from the machines of that profile that received the update,
scaled to the profile's count in the fleet (a sensor build hit on 1 of 1 canaries is hit on all
its machines); a profile none of whose machines received it is not estimated (`null`), and
`--measure-unstaged` replaces the estimate by a measurement on a second copy of the fleet.
"""

from __future__ import annotations

from typing import Any

from .record import MachineRecord


def blast_radius(records: list[MachineRecord]) -> int:
    return sum(1 for r in records if r.delivered and r.hit)


def unstaged_estimate(records: list[MachineRecord], counts: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per profile: machines delivered, hit, in the fleet, and the estimate (or None)."""
    out: dict[str, dict[str, Any]] = {}
    for profile, fleet in counts.items():
        judged = [r for r in records if r.profile == profile and r.delivered and r.verdict is not None
                  and r.verdict != "infra-error"]
        hit = sum(1 for r in judged if r.hit)
        estimate = round(hit * fleet / len(judged)) if judged else None
        out[profile] = {"delivered": len(judged), "hit": hit, "fleet": fleet, "estimate": estimate}
    return out


def unstaged_total(per_profile: dict[str, dict[str, Any]]) -> int:
    return sum(p["estimate"] or 0 for p in per_profile.values())
