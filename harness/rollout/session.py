"""One rollout from a request (the CLI's options, the pytest fixture's arguments): every input
checked before any machine exists, the run directory made, the live progress shown, and the
result written (also after Ctrl-C, then marked `interrupted`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..artifacts import default_root, new_run_id, write_atomic
from ..errors import ConfigError, HarnessError
from .content import content_set
from .fleet import (assign_rings, fleet_from_config, fleet_machines, fleet_profiles, parse_fleet_spec,
                    parse_rings, with_network)
from .orchestrator import HALT_SIGNALS, Rollout, RolloutPlan
from .progress import LiveProgress
from .result import rollout_result, write_result


@dataclass
class RolloutRequest:
    content: list[Path]
    rings: str
    fleet: str | None = None  # PROFILE:COUNT,...; None: the config file's fleet:
    config: Path | None = None
    bake_boots: int = 1
    bake_s: float = 0.0
    halt_on: str | tuple[str, ...] = HALT_SIGNALS
    recover: str = "auto"
    baseline: list[Path] | None = None
    measure_unstaged: bool = False
    seed: int = 0
    artifacts_root: Path | None = None
    report_dir: Path | None = None
    max_boots: int = 4
    quiet: bool = False
    run_id: str | None = None
    run_dir: Path | None = None  # default: <artifacts root>/<run id>
    before_delivery: Callable[[Any], None] | None = None  # tests: a real fault put on a machine first


@dataclass
class RolloutOutcome:
    result: dict[str, Any]
    report_dir: Path
    page: Path | None
    infra_failure: bool  # the rollout could not run (exit 3)


def parse_halt_on(value: str | tuple[str, ...]) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if items == ["none"]:
        return ()
    bad = [v for v in items if v not in HALT_SIGNALS]
    if bad or not items:
        raise ConfigError(f"--halt-on: {bad[0] if bad else value!r} is not a signal; use a comma list of "
                          f"{', '.join(HALT_SIGNALS)} (or none)")
    return tuple(dict.fromkeys(items))


def plan_rollout(request: RolloutRequest) -> RolloutPlan:
    """Check every input and lay the plan out; raises ConfigError/InputFileError (exit 2)."""
    if request.fleet:
        counts = parse_fleet_spec(request.fleet)
    elif request.config is not None and (from_file := fleet_from_config(request.config)) is not None:
        counts = from_file
    else:
        raise ConfigError("--fleet: no fleet given; write e.g. --fleet vuln:6,hard:2 (or a fleet: mapping in "
                          "the --config file)")
    profiles = {name: with_network(p) for name, p in fleet_profiles(counts, request.config).items()}
    rings = parse_rings(request.rings, sum(counts.values()))
    if request.recover not in ("auto", "safe-mode", "recovery-env"):
        raise ConfigError(f"--recover: {request.recover!r}; use auto, safe-mode or recovery-env")
    first = next(iter(profiles.values()))
    content = content_set(request.content, request.baseline, first)
    if len({p.driver is not None for p in profiles.values()}) > 1:
        raise ConfigError("--fleet: mixes a vendor driver's profiles with the sample sensor's; the same content "
                          "cannot go to both")
    machines = assign_rings(fleet_machines(counts), rings, request.seed)
    run_id = request.run_id or new_run_id()
    run_dir = request.run_dir or (request.artifacts_root or default_root()) / run_id
    return RolloutPlan(profiles=profiles, counts=counts, machines=machines, rings=rings, content=content,
                       run_id=run_id, run_dir=run_dir, bake_boots=request.bake_boots, bake_s=request.bake_s,
                       halt_on=parse_halt_on(request.halt_on), recover=request.recover,
                       measure_unstaged=request.measure_unstaged, max_boots=max(1, request.max_boots),
                       slot_prefix="" if request.run_id is None else f"{secrets.token_hex(2)}-",
                       before_delivery=request.before_delivery)


def run_rollout(request: RolloutRequest) -> RolloutOutcome:
    plan = plan_rollout(request)
    try:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{plan.run_dir}: cannot create the run directory: {exc.strerror}") from None
    report_dir = request.report_dir or plan.run_dir
    write_atomic(plan.run_dir / "repro.txt", _rerun(request, plan) + "\n")
    progress: LiveProgress | None = None
    rollout = Rollout(plan, say=lambda m: progress.message(m) if progress else None,
                      on_change=lambda: progress.changed() if progress else None)
    progress = LiveProgress(rollout.log, plan.rings, quiet=request.quiet)
    progress.message(f"{len(plan.machines)} machines, rings {plan.rings}, artifacts {plan.run_dir}")
    infra: str | None = None
    try:
        rollout.run()
    except KeyboardInterrupt:
        write_result(rollout_result(rollout, report_dir), report_dir, progress.message)
        progress.message(f"partial result: {report_dir / 'rollout.json'}")
        raise
    except ConfigError:
        raise  # bad input found late (a profile's image, a driver's module): exit 2
    except HarnessError as exc:  # the host failed: the result says so, exit 3
        infra = str(exc)
    result = rollout_result(rollout, report_dir)
    if infra:
        result["infra_error"] = infra
    page = write_result(result, report_dir, progress.message)
    if infra:
        progress.message(f"infrastructure failure: {infra}")
    return RolloutOutcome(result, report_dir, page, infra is not None)


def _rerun(request: RolloutRequest, plan: RolloutPlan) -> str:
    parts = ["harness rollout", *map(str, request.content), "--fleet",
             ",".join(f"{k}:{v}" for k, v in plan.counts.items()), "--rings", request.rings,
             "--seed", str(request.seed)]
    if request.config:
        parts += ["--config", str(request.config)]
    if request.baseline:
        parts += ["--baseline", *map(str, request.baseline)]
    return " ".join(parts)
