"""harness rollout without VMs: fleet and ring parsing, seeded stratified ring assignment, the
files' guest names, the blast radius arithmetic, and bad input (one line, exit 2)."""

from __future__ import annotations

import collections
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_profiles
from harness.errors import ConfigError, InputFileError
from harness.rollout.blast import blast_radius, unstaged_estimate, unstaged_total
from harness.rollout.content import SAMPLE_GOOD, content_set
from harness.rollout.fleet import (
    assign_rings,
    fleet_from_config,
    fleet_machines,
    fleet_profiles,
    parse_fleet_spec,
    parse_rings,
)
from harness.rollout.progress import LiveProgress
from harness.rollout.record import Delivery, MachineRecord, RolloutLog

REPO = Path(__file__).resolve().parents[1]
CF291 = REPO / "fixtures" / "content" / "cf291-field21.sys"


def test_a_fleet_spec_is_profiles_and_counts_in_order() -> None:
    assert parse_fleet_spec("vuln:6,hard:2") == {"vuln": 6, "hard": 2}
    assert list(parse_fleet_spec("hard:1, vuln:3")) == ["hard", "vuln"]


@pytest.mark.parametrize("spec, message", [
    ("vuln", "'vuln' is not PROFILE:COUNT"),
    ("vuln:0", "give at least 1 machine"),
    ("vuln:2,vuln:3", "named twice"),
    ("vuln:65", "at most 64"),
    ("vuln:x", "is not PROFILE:COUNT"),
])
def test_a_bad_fleet_spec_names_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_fleet_spec(spec)


def test_ring_sizes_are_machines_or_cumulative_percentages() -> None:
    assert parse_rings("2,50%,100%", 8) == [2, 2, 4]
    assert parse_rings("2,50%,100%", 16) == [2, 6, 8]
    assert parse_rings("1,3,100%", 8) == [1, 3, 4]
    assert parse_rings("2,50%,100%", 4) == [2, 0, 2]  # 50% of 4 is reached by ring 0 already
    assert parse_rings("30%,100%", 8) == [3, 5]  # rounded up: a canary is never empty
    assert parse_rings("100%", 3) == [3]


@pytest.mark.parametrize("rings, message", [
    ("2,50%", "reach 4 of the fleet's 8 machines; end the list with 100%"),
    ("6,50%,100%", r"50% \(4 machines\) is below the 6 machines"),
    ("2,9", "takes the rings to 11 machines; the fleet has 8"),
    ("2,0,100%", "a ring of 0 machines"),
    ("2,150%", "at most 100%"),
    ("two,100%", "neither a machine count"),
])
def test_bad_rings_name_the_problem(rings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rings(rings, 8)


def _rings(counts: dict[str, int], sizes: list[int], seed: int) -> list[list[str]]:
    assigned = assign_rings(fleet_machines(counts), sizes, seed)
    out: list[list[str]] = [[] for _ in sizes]
    for machine in assigned:
        out[machine.ring].append(machine.profile)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_early_rings_hold_one_machine_of_each_profile(seed: int) -> None:
    rings = _rings({"vuln": 6, "hard": 2}, [2, 2, 4], seed)
    assert sorted(rings[0]) == ["hard", "vuln"]  # the canary sees both sensor builds
    assert sorted(rings[1]) == ["hard", "vuln"]
    assert sorted(rings[2]) == ["vuln"] * 4
    rings = _rings({"a": 5, "b": 5, "c": 1}, [2, 9], seed)
    assert len(set(rings[0])) == 2  # two of the three profiles: as many as the size allows
    assert collections.Counter(rings[0] + rings[1]) == {"a": 5, "b": 5, "c": 1}


def test_a_one_machine_canary_picks_a_profile_the_next_ring_then_covers() -> None:
    for seed in range(10):
        rings = _rings({"vuln": 3, "hard": 1}, [1, 1, 2], seed)
        assert sorted(rings[0] + rings[1]) == ["hard", "vuln"]


def test_assignment_is_seeded() -> None:
    machines = fleet_machines({"vuln": 6, "hard": 2})
    first = assign_rings(machines, [2, 2, 4], 7)
    assert assign_rings(machines, [2, 2, 4], 7) == first
    assert any(assign_rings(machines, [2, 2, 4], s) != first for s in range(1, 10))
    assert sorted(m.name for m in first) == sorted(m.name for m in machines)


def test_the_fleet_profiles_vuln_and_hard_are_built_in_and_a_config_file_wins(tmp_path: Path) -> None:
    profiles = fleet_profiles({"vuln": 1, "hard": 1}, None)
    assert (profiles["vuln"].sensor, profiles["hard"].sensor) == ("vulnerable", "hardened")
    config = tmp_path / "harness.yaml"
    config.write_text("profiles:\n  hard:\n    sensor: vulnerable\n    memory_mib: 192\nfleet:\n  hard: 2\n  vuln: 1\n")
    assert fleet_profiles({"hard": 1}, config)["hard"].memory_mib == 192
    assert fleet_from_config(config) == {"hard": 2, "vuln": 1}
    assert set(load_profiles(config)) >= {"linux-ref", "hard"}  # the fleet: section is allowed
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        fleet_profiles({"nope": 1}, config)
    config.write_text("fleet:\n  vuln: zero\n")
    with pytest.raises(ConfigError, match=r"fleet\.vuln: expected a machine count of at least 1"):
        fleet_from_config(config)


def test_files_get_channel_names_the_update_above_the_baseline(tmp_path: Path) -> None:
    profile = fleet_profiles({"vuln": 1}, None)["vuln"]
    files = content_set([CF291], None, profile)
    assert files.baseline == {"C-00000291-00000000-00000001.sys": SAMPLE_GOOD.read_bytes()}
    assert files.update == {"C-00000291-00000000-00000002.sys": CF291.read_bytes()}
    assert files.rollback_actions() == [("C-00000291-00000000-00000002.sys", None)]
    named = tmp_path / "C-00000291-00000000-00000031.sys"
    named.write_bytes(SAMPLE_GOOD.read_bytes())
    files = content_set([CF291, named], [named], profile)  # the update replaces the baseline's file
    assert list(files.update) == ["C-00000291-00000000-00000032.sys", "C-00000291-00000000-00000031.sys"]
    assert files.rollback_actions()[1] == ("C-00000291-00000000-00000031.sys", named.read_bytes())
    with pytest.raises(InputFileError, match="no such file"):
        content_set([tmp_path / "missing.sys"], None, profile)


def _record(profile: str, verdict: str | None, delivered: bool = True) -> MachineRecord:
    record = MachineRecord(f"{profile}-x", profile, 0, verdict=verdict)
    if delivered:
        record.deliveries.append(Delivery(1.0, True))
    return record


def test_blast_radius_counts_crashes_never_infra_errors_and_estimates_per_profile() -> None:
    records = [_record("vuln", "boot-loop"), _record("hard", "content-rejected"), _record("vuln", "infra-error"),
               _record("vuln", None, delivered=False)]
    assert blast_radius(records) == 1
    per = unstaged_estimate(records, {"vuln": 6, "hard": 2, "other": 3})
    assert per["vuln"] == {"delivered": 1, "hit": 1, "fleet": 6, "estimate": 6}
    assert per["hard"]["estimate"] == 0 and per["other"]["estimate"] is None
    assert unstaged_total(per) == 6


@pytest.mark.parametrize("args, message", [
    ([str(CF291), "--fleet", "vuln:6,hrd:2", "--rings", "2,100%"], "--fleet: no profile 'hrd'"),
    ([str(CF291), "--fleet", "vuln:6", "--rings", "2,50%"], "--rings: the rings reach 3 of the fleet's 6"),
    (["missing.sys", "--fleet", "vuln:2", "--rings", "1,100%"], "missing.sys: no such file"),
    ([str(CF291), "--rings", "1,100%"], "--fleet: no fleet given"),
    ([str(CF291), "--fleet", "vuln:2", "--rings", "1,100%", "--halt-on", "crash,smoke"],
     "--halt-on: 'smoke' is not a signal"),
    ([str(CF291), "--fleet", "vuln:2", "--rings", "1,100%", "--bake", "-1"], "--bake: -1.0; give 0 or more"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_machine(args: list[str], message: str,
                                                              tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "rollout", *args, "--artifacts", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("harness: error: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _log_with(machines: list[tuple[str, int]]) -> RolloutLog:
    log = RolloutLog()
    for name, ring in machines:
        log.add(MachineRecord(name, name.split("-")[0], ring))
    return log


def test_progress_on_a_terminal_is_one_live_line_per_ring_redrawn_in_place() -> None:
    log = _log_with([("vuln-0", 0), ("hard-0", 0), ("vuln-1", 1)])
    out = _Terminal()
    progress = LiveProgress(log, [2, 1], out)
    log.on_change = progress.changed
    log.state("vuln-0", "crashed", "crash at boot 1")
    progress.message("HALT at ring 0")
    text = out.getvalue()
    assert "\x1b[3F\x1b[J" in text  # the block (header and 2 rings) erased before it is drawn again
    last = text.split("\x1b[J")[-1].splitlines()
    assert last[0] == "harness: rollout: HALT at ring 0"
    assert last[2] == "  ring 0 [2] vuln-0:CRASH  hard-0:boot" and last[3] == "  ring 1 [1] vuln-1:boot"


def test_progress_in_a_log_is_one_line_per_state_change() -> None:
    log = _log_with([("vuln-0", 0)])
    out = io.StringIO()
    log.on_change = LiveProgress(log, [1], out).changed
    log.state("vuln-0", "booting", "baseline boot")
    log.state("vuln-0", "healthy", "baseline: boot complete")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "ring 0  vuln-0     healthy     baseline: boot complete" in lines[1]
    assert [e["state"] for e in log.sorted_timeline()] == ["booting", "healthy"]


def test_an_unreachable_host_is_exit_3_with_the_result_written(tmp_path: Path) -> None:
    config = tmp_path / "harness.yaml"
    config.write_text("profiles:\n  far:\n    uri: qemu+tcp://127.0.0.1:9/system\n")  # nothing listens there
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "rollout", str(CF291), "--config", str(config),
                           "--fleet", "far:2", "--rings", "1,100%", "--artifacts", str(tmp_path / "a"), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert "127.0.0.1:9" in result["infra_error"] and result["fleet"] == 2 and result["delivered"] == 0
    [run_dir] = (tmp_path / "a").iterdir()
    assert json.loads((run_dir / "rollout.json").read_text()) == result
