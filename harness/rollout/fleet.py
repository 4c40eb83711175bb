"""What a rollout runs on: the fleet (machines per profile), its rings, and which machine is in
which ring.

`--fleet vuln:6,hard:2` (or a `fleet:` mapping in the config file) names the profiles and how
many machines of each; `--rings 2,50%,100%` gives each ring's size, a plain number in machines,
a percentage as the cumulative share of the fleet reached once that ring has it. Assignment is
seeded and stratified: each ring first takes one machine of every profile it can (profiles not
yet seen in an earlier ring first), then fills up at random, so a canary ring catches a bug that
hits one sensor build only.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import Profile, load_profiles
from ..errors import ConfigError

# Built in beside linux-ref, for a fleet of vulnerable and hardened sample sensors; a profile of
# the same name in the config file wins.
BUILTIN_FLEET_PROFILES = {"vuln": Profile(name="vuln", sensor="vulnerable"),
                          "hard": Profile(name="hard", sensor="hardened")}
MAX_FLEET = 64  # machines; more would not fit a host's memory (about 300 MB per guest)
_ENTRY = re.compile(r"^(?P<profile>[A-Za-z0-9_.-]+):(?P<count>\d+)$")


@dataclass(frozen=True)
class FleetMachine:
    """One machine of the fleet before it exists: its name, its profile and its ring."""
    name: str
    profile: str
    ring: int = -1


def parse_fleet_spec(spec: str, where: str = "--fleet") -> dict[str, int]:
    """`vuln:6,hard:2` -> {"vuln": 6, "hard": 2} (order kept)."""
    counts: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        m = _ENTRY.match(part)
        if not m:
            raise ConfigError(f"{where}: {part!r} is not PROFILE:COUNT; write e.g. --fleet vuln:6,hard:2")
        name, count = m["profile"], int(m["count"])
        if count < 1:
            raise ConfigError(f"{where}: {name}: a count of {count}; give at least 1 machine")
        if name in counts:
            raise ConfigError(f"{where}: profile {name} is named twice; give its count once")
        counts[name] = count
    return _check_total(counts, where)


def _check_total(counts: dict[str, int], where: str) -> dict[str, int]:
    total = sum(counts.values())
    if total < 1:
        raise ConfigError(f"{where}: an empty fleet; name at least one PROFILE:COUNT")
    if total > MAX_FLEET:
        raise ConfigError(f"{where}: {total} machines; at most {MAX_FLEET} fit one rollout")
    return counts


def fleet_from_config(path: Path) -> dict[str, int] | None:
    """The config file's `fleet:` mapping (profile name -> count), or None when it has none."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None  # load_profiles reports the file's problem with its line
    if not isinstance(data, dict) or data.get("fleet") is None:
        return None
    fleet = data["fleet"]
    where = f"{path}: fleet"
    if not isinstance(fleet, dict) or not fleet:
        raise ConfigError(f"{where}: expected a mapping of profile name to machine count, e.g. {{vuln: 6, hard: 2}}")
    counts: dict[str, int] = {}
    for name, count in fleet.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{where}.{name}: expected a machine count of at least 1, got {count!r}")
        counts[str(name)] = count
    return _check_total(counts, where)


def fleet_profiles(counts: dict[str, int], config: Path | None) -> dict[str, Profile]:
    """The profile of each fleet entry: the config file's, else a built-in one."""
    known = {**BUILTIN_FLEET_PROFILES, **load_profiles(config)}
    missing = [name for name in counts if name not in known]
    if missing:
        where = str(config) if config else "the built-in profiles"
        raise ConfigError(f"--fleet: no profile {missing[0]!r} in {where}; known: {', '.join(sorted(known))}")
    return {name: known[name] for name in counts}


def with_network(profile: Profile) -> Profile:
    """Updates arrive online over SSH: every fleet machine has user networking."""
    return profile if profile.network == "user" else dataclasses.replace(profile, network="user")


def parse_rings(spec: str, fleet_size: int, where: str = "--rings") -> list[int]:
    """Ring sizes from `2,50%,100%`: a number is that many machines, a percentage the cumulative
    share of the fleet reached with that ring (rounded up). A ring may come out empty (a
    percentage already reached); the last ring must reach the whole fleet."""
    sizes: list[int] = []
    reached = 0
    parts = [p.strip() for p in spec.split(",")]
    for part in parts:
        if re.fullmatch(r"\d+(\.\d+)?%", part):
            share = float(part[:-1])
            if not 0 < share <= 100:
                raise ConfigError(f"{where}: {part}: a percentage must be above 0% and at most 100%")
            target = math.ceil(fleet_size * share / 100 - 1e-9)
            if target < reached:
                raise ConfigError(f"{where}: {part} ({target} machines) is below the {reached} machines the "
                                  "rings before it reach; percentages are cumulative and must not go down")
            size = target - reached
        elif re.fullmatch(r"\d+", part):
            size = int(part)
            if size < 1:
                raise ConfigError(f"{where}: a ring of 0 machines; give at least 1 (or a percentage)")
        else:
            raise ConfigError(f"{where}: {part!r} is neither a machine count (2) nor a percentage (50%); "
                              "write e.g. --rings 2,50%,100%")
        if reached + size > fleet_size:
            raise ConfigError(f"{where}: {part} takes the rings to {reached + size} machines; the fleet has "
                              f"{fleet_size}")
        sizes.append(size)
        reached += size
    if reached != fleet_size:
        raise ConfigError(f"{where}: the rings reach {reached} of the fleet's {fleet_size} machines; end the "
                          "list with 100%")
    return sizes


def fleet_machines(counts: dict[str, int]) -> list[FleetMachine]:
    """The machines of the fleet, named <profile>-<n>, profile by profile."""
    return [FleetMachine(f"{name}-{i}", name) for name, count in counts.items() for i in range(count)]


def assign_rings(machines: list[FleetMachine], sizes: list[int], seed: int) -> list[FleetMachine]:
    """Each machine with its ring: seeded, stratified (see the module's docstring)."""
    rng = random.Random(f"rollout:{seed}")
    pool: dict[str, list[FleetMachine]] = {}
    for machine in machines:
        pool.setdefault(machine.profile, []).append(machine)
    for members in pool.values():
        rng.shuffle(members)
    seen: set[str] = set()
    out: list[FleetMachine] = []
    for ring, size in enumerate(sizes):
        taken: list[FleetMachine] = []
        profiles = [p for p in pool if pool[p]]
        rng.shuffle(profiles)
        profiles.sort(key=lambda p: p in seen)  # stable: unseen profiles first, in seeded order
        for profile in profiles[:size]:
            taken.append(pool[profile].pop())
            seen.add(profile)
        rest = [m for members in pool.values() for m in members]
        rng.shuffle(rest)
        for machine in rest[:size - len(taken)]:
            pool[machine.profile].remove(machine)
            taken.append(machine)
            seen.add(machine.profile)
        out.extend(dataclasses.replace(m, ring=ring) for m in sorted(taken, key=lambda m: _order(m.name)))
    return out


def _order(name: str) -> tuple[str, int]:
    base, _, index = name.rpartition("-")
    return (base, int(index)) if index.isdigit() else (name, 0)
