"""`harness campaign`: seeded files, byte mutators for a vendor's format, bad input, crash
grouping, and on real machines the end-to-end story of issue 12 and a resume after Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.campaign.crashes import group_crashes
from harness.campaign.mutators import BYTE_MUTATORS, mutate_bytes
from harness.campaign.predict import Predictor, disagreeing_tiers
from harness.campaign.source import SAMPLE_MUTATIONS, VENDOR_MUTATIONS, FileSource, check_mutations
from harness.campaign.state import CampaignState
from harness.content.format import FILE_NAME, file_name, parse
from harness.content.sensor import check_file
from harness.crash.report import normalize_title
from harness.errors import InputFileError
from harness.paths import CONTENT_FIXTURES

from .conftest import REPO, run_harness
from .vendor_driver.content import crashing_rules, good_rules, refused_rules

VENDOR_PROFILE = """\
profiles:
  acme:
    driver:
      module: acme_guard.ko
      content_dir: /var/lib/acme
      ready: 'acme_guard: armed'
"""


def plan_all(source: FileSource, count: int) -> list[tuple[str, str, bytes, dict]]:
    return [(p.name, p.stored, p.data, p.origin) for p in map(source.plan, range(1, count + 1))]


def test_the_same_seed_gives_the_same_files_and_another_seed_others() -> None:
    first = plan_all(FileSource(17, SAMPLE_MUTATIONS, None, False), 40)
    assert first == plan_all(FileSource(17, SAMPLE_MUTATIONS, None, False), 40)
    other = plan_all(FileSource(18, SAMPLE_MUTATIONS, None, False), 40)
    assert [f[2] for f in first] != [f[2] for f in other]
    # Every mutation once per round, in a seeded order: a list holding cf291-field21 crashes every round.
    round_one = [f[3]["mutation"] for f in first[:len(SAMPLE_MUTATIONS)]]
    assert sorted(round_one) == sorted(SAMPLE_MUTATIONS)
    assert round_one != list(SAMPLE_MUTATIONS) or round_one != [f[3]["mutation"] for f in other[:len(SAMPLE_MUTATIONS)]]
    # The sample's generated files are seen by the driver as the first file of channel 291.
    assert {f[0] for f in first} == {file_name(291, 0, 1)}
    assert first[0][1].startswith("0001-") and len({f[1] for f in first}) == 40


def test_a_well_formed_file_loads_and_cf291_crashes_the_vulnerable_host_build(tmp_path: Path) -> None:
    source = FileSource(3, ("well-formed", "cf291-field21"), None, False)
    predictor = Predictor("vulnerable", vendor=False, sys_tier=False)
    seen = {}
    for planned in map(source.plan, (1, 2)):
        path = tmp_path / planned.stored
        path.write_bytes(planned.data)
        seen[planned.origin["mutation"]] = predictor.predict(path)["host"]
    assert seen["well-formed"]["expected"] == "healthy"
    assert seen["cf291-field21"]["expected"] == "boot-loop"
    assert seen["cf291-field21"]["function"] == "chf_match_criterion"
    assert disagreeing_tiers({"host": seen["cf291-field21"]}, "boot-loop") == []
    assert disagreeing_tiers({"host": seen["cf291-field21"]}, "healthy") == ["host"]
    assert disagreeing_tiers({"host": seen["cf291-field21"]}, "infra-error") == []


def test_byte_mutators_are_seeded_and_change_the_file() -> None:
    data, other = bytes(range(256)) * 2, b"\xaa" * 100
    for name in BYTE_MUTATORS:
        out = mutate_bytes(name, data, other, "7:1")
        assert out == mutate_bytes(name, data, other, "7:1"), name
        assert out != data, name
    assert len(mutate_bytes("bytes-truncate", data, other, "1")) < len(data)
    assert len(mutate_bytes("bytes-insert", data, other, "1")) > len(data)
    flipped = mutate_bytes("bytes-flip", data, other, "1")
    assert len(flipped) == len(data) and 1 <= sum(bin(a ^ b).count("1") for a, b in zip(data, flipped)) <= 8


def test_a_vendor_format_gets_byte_mutations_of_its_corpus_under_its_own_names(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in (("10-good.rules", good_rules()), ("20-refused.rules", refused_rules()),
                       ("30-crash.rules", crashing_rules())):
        (corpus / name).write_bytes(data)
    source = FileSource(5, VENDOR_MUTATIONS, corpus, vendor=True)
    files = [source.plan(i) for i in range(1, 31)]
    assert files == [source.plan(i) for i in range(1, 31)]
    # The corpus as it is first, then byte-level mutations only, each under its source's name.
    assert [f.origin["mutation"] for f in files[:3]] == ["corpus"] * 3
    assert [f.data for f in files[:3]] == [(corpus / n).read_bytes() for n in sorted(p.name for p in corpus.iterdir())]
    assert {f.origin["mutation"] for f in files[3:]} == set(BYTE_MUTATORS)
    for f in files[3:]:
        assert f.name == f.origin["base"] and f.stored == f"{f.index:04d}/{f.name}"
        assert f.data != (corpus / f.name).read_bytes() or f.origin["mutation"] == "bytes-splice"
    with pytest.raises(InputFileError, match="--faults: 'cf291-field21': this profile's vendor driver"):
        check_mutations(["cf291-field21"], vendor=True)
    with pytest.raises(InputFileError, match="--corpus: required"):
        FileSource(5, VENDOR_MUTATIONS, None, vendor=True)


def test_a_sample_corpus_keeps_channel_file_names(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    reproducer = CONTENT_FIXTURES / "reproducers" / "C-00000291-00000000-00000032.sys"
    (corpus / reproducer.name).write_bytes(reproducer.read_bytes())
    (corpus / "good.sys").write_bytes((CONTENT_FIXTURES / "good.sys").read_bytes())
    source = FileSource(1, ("cf291-field21", "bytes-flip"), corpus, vendor=False)
    first, second = source.plan(1), source.plan(2)
    assert first.name == reproducer.name and first.stored == f"0001/{reproducer.name}"
    assert second.name == file_name(291, 0, 1) and FILE_NAME.match(second.name) and second.stored == "0002-corpus.sys"
    mutated = [source.plan(i) for i in range(3, 9)]
    assert {m.origin["mutation"] for m in mutated} <= {"cf291-field21", "bytes-flip"}
    assert any(m.origin["mutation"] == "cf291-field21" and parse(m.data).fields == 21 for m in mutated)


def cli_error(*args: str | Path) -> str:
    proc = run_harness("campaign", *args, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_bad_input_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    assert "--files and --minutes" in cli_error("--files", "3", "--minutes", "1", "--out", tmp_path / "a")
    assert "--faults: 'cf291-field22': unknown mutation" in cli_error("--faults", "cf291-field22",
                                                                       "--out", tmp_path / "b")
    (tmp_path / "empty").mkdir()
    assert "--corpus:" in cli_error("--corpus", tmp_path / "empty", "--out", tmp_path / "c")
    assert "--workers" in cli_error("--workers", "none", "--out", tmp_path / "d")
    config = tmp_path / "acme.yaml"
    (tmp_path / "acme_guard.ko").write_bytes(b"not booted in this test")
    config.write_text(VENDOR_PROFILE)
    assert "--corpus: required" in cli_error("--config", config, "--profile", "acme", "--out", tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_a_rerun_with_other_parameters_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    state = CampaignState(out)
    assert state.open({"seed": 1, "files": 6}) is False
    assert state.open({"seed": 1, "files": 6}) is True
    line = cli_error("--seed", "2", "--files", "6", "--out", out, "--path", "boot")
    assert f"--out: {out} holds a campaign with other parameters" in line and "seed 1 there, 2 here" in line
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "not empty and holds no campaign" in cli_error("--out", tmp_path / "other", "--path", "boot")


def test_the_log_skips_a_line_torn_by_a_kill(tmp_path: Path) -> None:
    state = CampaignState(tmp_path)
    state.open({"seed": 0})
    state.append({"index": 1, "verdict": "healthy"})
    with open(state.log_path, "a") as handle:
        handle.write('{"index": 2, "verd')
    assert state.judged_indices() == {1}
    state.repair_tail()
    state.append({"index": 3, "verdict": "healthy"})
    assert state.judged_indices() == {1, 3}


def test_a_file_the_machines_failed_is_judged_again_and_its_last_line_counts(tmp_path: Path) -> None:
    state = CampaignState(tmp_path)
    state.open({"seed": 0})
    state.append({"index": 1, "verdict": "infra-error"})
    state.append({"index": 2, "verdict": "healthy"})
    assert state.judged_indices() == {2}
    state.append({"index": 1, "verdict": "boot-loop"})
    assert state.judged_indices() == {1, 2}
    assert [(e["index"], e["verdict"]) for e in state.final_entries()] == [(2, "healthy"), (1, "boot-loop")]


def test_crashes_at_other_addresses_are_one_group() -> None:
    def entry(index: int, title: str) -> dict:
        return {"index": index, "crash": {"title": title, "function": "chf_crc32", "module": "harness_sensor"}}

    entries = [entry(1, "BUG: unable to handle page fault for address: ffffc90000a41000"),
               {"index": 2, "crash": None},
               entry(3, "BUG: unable to handle page fault for address: ffffc90000b7f000"),
               entry(4, "general protection fault in chf_crc32+0x1e/0x80")]
    groups = group_crashes(entries)
    assert [(g.count, g.indices, g.first["index"]) for g in groups] == [(2, [1, 3], 1), (1, [4], 4)]
    assert groups[0].key == normalize_title(entries[0]["crash"]["title"])


# ------------------------------------------------------------------ on machines


def campaign_json(*args: str | Path) -> dict:
    proc = run_harness("campaign", *args, "--json", "--path", "boot", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def log_indices(out: Path) -> list[int]:
    return [json.loads(line)["index"] for line in (out / "judged.jsonl").read_text().splitlines()]


@pytest.mark.vm
def test_a_seeded_campaign_judges_groups_replays_and_minimises(tmp_path: Path) -> None:
    """The 'What will be checked' story at 6 files: every file judged, the host right about each,
    a crash whose reproducer replays to the same title and whose minimised file still crashes."""
    out = tmp_path / "campaign"
    faults = "cf291-field21,well-formed,truncated,bad-crc,cf291-wildcard,bytes-flip"
    summary = campaign_json("--seed", "291", "--files", "6", "--faults", faults, "--workers", "2", "--out", out)
    assert summary["files"] == 6 and summary["planned"] == 6 and summary["complete"]
    assert sorted(log_indices(out)) == [1, 2, 3, 4, 5, 6]
    assert summary["disagreements"] == [], summary["disagreements"]
    assert sum(summary["verdicts"].values()) == 6 and summary["verdicts"]["healthy"] >= 1
    assert summary["files_per_min"] > 0 and summary["out"] == str(out.resolve())
    assert json.loads((out / "campaign.json").read_text()) == summary
    assert "unique crash" in (out / "index.html").read_text()  # its page (opened in Chromium by test_report_*)
    crashes = summary["unique_crashes"]
    assert crashes and "chf_match_criterion" in {c["function"] for c in crashes}
    replays = []  # every reproducer replayed by its own `rerun` command, side by side
    for crash in crashes:
        reproducer = Path(crash["reproducer"])
        assert reproducer.is_file() and Path(crash["serial_log"]).is_file()
        argv = shlex.split(crash["rerun"])
        assert argv[:3] == ["harness", "reproduce", str(reproducer)] and "--sensor" in argv
        replays.append(subprocess.Popen([sys.executable, "-m", "harness.cli", *argv[1:], "--json", "--artifacts",
                                         str(tmp_path / "replays")], cwd=REPO, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    for crash, replay in zip(crashes, replays):
        stdout, stderr = replay.communicate(timeout=600)
        assert replay.returncode == 0, stderr[-3000:]
        assert normalize_title(json.loads(stdout)["crash"]["title"]) == crash["normalized_title"]
        reproducer = Path(crash["reproducer"])
        assert crash["minimized"], crash.get("minimized_note")
        minimized = Path(crash["minimized"])
        assert minimized.stat().st_size < reproducer.stat().st_size
        assert check_file(minimized, "vulnerable").outcome == "crash"
    # A rerun of a finished campaign judges nothing and says the same.
    again = campaign_json("--seed", "291", "--files", "6", "--faults", faults, "--out", out)
    assert again["judged_this_run"] == 0 and again["unique_crashes"] == crashes
    assert len(log_indices(out)) == 6


@pytest.mark.vm
def test_ctrl_c_stops_cleanly_and_the_rerun_judges_each_file_once(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    args = ["--seed", "4242", "--files", "3", "--faults", "well-formed,bad-magic,zeroed",  # one boot each
            "--out", str(out), "--path", "boot"]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "campaign", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "judged.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "continue with the same command" in err
    before = log_indices(out)
    assert 1 <= len(before) < 3
    files_before = {p.name: p.read_bytes() for p in (out / "files").iterdir()}
    summary = campaign_json(*args)
    after = log_indices(out)
    assert sorted(after) == [1, 2, 3] and after[:len(before)] == before
    assert summary["files"] == 3 and summary["judged_this_run"] == 3 - len(before)
    for name, data in files_before.items():  # the same seed planned the same files again
        assert (out / "files" / name).read_bytes() == data
    # Ctrl-C closed its machines: none of the campaign's domains is left running.
    virsh = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"], capture_output=True, text=True)
    domains = {p.read_text().strip() for p in (out / "runs").rglob("domain.txt")}
    assert len(domains) >= 3 and not domains & set(virsh.stdout.split())


def test_the_default_path_is_fast_where_the_snapshot_path_supports_the_profile() -> None:
    import dataclasses

    from harness.campaign.path_choice import choose_path
    from harness.config import Profile

    fastpath = pytest.importorskip("harness.fastpath")
    profile = Profile()
    assert choose_path(None, profile) == ("fast" if fastpath.supports(profile) else "boot")
    assert choose_path("boot", profile) == "boot"
    booting = dataclasses.replace(profile, fast_path=False)
    assert choose_path(None, booting) == "boot"
    with pytest.raises(InputFileError, match="--path fast: profile linux-ref: fast_path is false.*use --path boot"):
        choose_path("fast", booting)


@pytest.mark.vm  # no machine boots, but the profile's guest is prepared (the reference guest)
def test_machines_failing_file_after_file_stop_the_campaign_with_status_3(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A libvirt that cannot be reached (a real socket path that does not exist): each file is
    judged again after the waits, logged as infra-error, and three in a row stop the campaign;
    those files are not counted as judged, so the rerun judges them again."""
    from harness.campaign import runner
    from harness.cli import main

    monkeypatch.setattr(runner, "INFRA_WAITS_S", (0.1,))
    config = tmp_path / "gone.yaml"
    config.write_text('profiles:\n  gone:\n    uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock"\n')
    out = tmp_path / "campaign"
    rc = main(["campaign", "--config", str(config), "--profile", "gone", "--files", "5", "--out", str(out),
               "--path", "boot", "--json"])
    captured = capsys.readouterr()
    assert rc == 3
    summary = json.loads(captured.out)
    assert summary["verdicts"]["infra-error"] == 3 and not summary["complete"]
    assert "failed 3 files in a row" in summary["stopped"] and "/nonexistent/libvirt-sock" in summary["stopped"]
    assert CampaignState(out).judged_indices() == set()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["0001", "0001.earlier-1", "0002", "0002.earlier-1",
                                                               "0003", "0003.earlier-1"]
