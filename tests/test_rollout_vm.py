"""harness rollout on real machines (the `rollout` fixture): a CF291-style file halts at the
canary ring, which holds both sensor builds, and every machine ends healthy; a good file reaches
every machine. A small fleet (3 vulnerable, 1 hardened) keeps this within CI's budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from harness.content.faults import fault
from harness.content.generate import new_channel_file

REPO = Path(__file__).resolve().parents[1]
GOOD = (REPO / "fixtures" / "content" / "good.sys").read_bytes()
FLEET = "vuln:3,hard:1"
RINGS = "2,50%,100%"  # on 4 machines: [2, 0, 2]

pytestmark = [pytest.mark.vm, pytest.mark.fleet(FLEET, rings=RINGS)]


def _by_ring(result: dict[str, Any], ring: int) -> list[dict[str, Any]]:
    return [m for m in result["machines"] if m["ring"] == ring]


@pytest.mark.expect_crash  # the canary's vulnerable machine crashes on purpose
def test_a_cf291_file_halts_at_the_canary_and_the_fleet_ends_healthy(rollout: Callable[..., dict[str, Any]]) -> None:
    bad = fault("cf291-field21").apply(GOOD, seed=13)  # written here, never a fixture file
    result = rollout(bad)
    assert result["rings"] == [2, 0, 2]
    canary = _by_ring(result, 0)
    assert sorted(m["profile"] for m in canary) == ["hard", "vuln"]
    assert result["halted"] and result["halted_ring"] == 0, result["halt_reason"]
    assert result["blast_radius"] == 1 and result["unstaged_blast_radius"] == 3
    assert result["delivered_past_halted_ring"] == 0
    assert all(not m["deliveries"] for m in result["machines"] if m["ring"] > 0)
    signal = result["halt_signal"]
    assert signal["latency_s"] < 1.0
    # every delivery started before the halt; none after it
    assert all(d["t"] <= signal["halted_t"] for m in result["machines"] for d in m["deliveries"])
    vuln = next(m for m in canary if m["profile"] == "vuln")
    assert vuln["verdict"] in ("boot-loop", "crashed") and "chf_match_criterion" in vuln["crash_title"]
    assert vuln["recovery"]["result"] == "recovered"
    hard = next(m for m in canary if m["profile"] == "hard")
    assert hard["verdict"] == "content-rejected" and hard["rollback"] == "online"
    assert result["healthy_at_end"] == 4 and result["seconds_to_healthy_fleet"] > result["seconds_to_halt"]
    states = {e["state"] for e in result["timeline"] if e["machine"] == vuln["name"]}
    assert {"booting", "healthy", "updated", "crashed", "looping", "recovering", "recovered"} <= states
    times = [e["t"] for e in result["timeline"]]
    assert times == sorted(times)
    report = Path(result["report_dir"])
    assert (report / "rollout.json").is_file() and (report / vuln["serial_log"]).is_file()


def test_a_good_file_reaches_every_machine(rollout: Callable[..., dict[str, Any]]) -> None:
    update = new_channel_file(instances=6, seed=2024).to_bytes()  # the next content version, well-formed
    result = rollout(update)
    assert not result["halted"], result["halt_reason"]
    assert result["blast_radius"] == 0 and result["unstaged_blast_radius"] == 0
    assert result["delivered"] == 4 and result["healthy_at_end"] == 4
    assert all(m["verdict"] == "healthy" and m["final_verdict"] == "healthy" for m in result["machines"])
