"""The driver's own word and its online reload, on the real harnessflt.sys under the sys tier.

The driver writes what it loaded and rejected, and that it finished, under its service key
(volatile values in Parameters\\State, drivers/windows/harnessflt.c "status key"); the guest's
boot-marker.ps1 prints that on COM2 and the Windows family judges healthy / content-rejected
from it.  Here the registry calls run against the sys tier's registry model and the values are
read back as a reader would see them.  The online reload goes through the driver's FltMgr
communication port (connect, one message, close), as the harness's PowerShell does in a guest;
the hardened build must keep the last good content of a file whose update is bad.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.paths import CONTENT_FIXTURES

from .conftest import run_harness
from .test_sys_tier import content_dir, drivers  # noqa: F401 - the module fixture
from .test_windows_driver_pe import BUILDS

NAME = "C-00000291-00000000-00000031.sys"
GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
BAD_MAGIC = (CONTENT_FIXTURES / "bad-magic.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_INSTANCES = 6  # fixtures/content/expected.yaml, good.sys


@pytest.fixture(scope="module")
def zygotes(drivers: dict[str, Path]) -> dict[str, Any]:  # noqa: F811
    from harness.sys_tier.zygote import Zygote

    return {build: Zygote(path) for build, path in drivers.items()}


def _folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / name
    folder.mkdir()
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return folder


@pytest.mark.parametrize("build", BUILDS)
def test_the_status_key_names_what_was_loaded_and_rejected_with_the_reason(
        zygotes: dict[str, Any], tmp_path: Path, build: str) -> None:
    files = {"C-00000291-00000000-00000001.sys": GOOD, "C-00000291-00000000-00000002.sys": BAD_MAGIC}
    if build == "hardened":
        files["C-00000291-00000000-00000003.sys"] = CF291
    run = zygotes[build].run(_folder(tmp_path, "HarnessSensor", files))
    assert run.stop is None and run.leaks == []
    status = run.driver_status
    assert status is not None
    assert status["Status"] == "loaded" and status["Finished"] == 1 and status["Generation"] == 1
    assert status["Build"] == build
    assert status["Loaded"] == ["C-00000291-00000000-00000001.sys"]
    assert status["Instances"] == GOOD_INSTANCES
    rejected = {entry.split(": ", 1)[0]: entry.split(": ", 1)[1] for entry in status["Rejected"]}
    assert rejected["C-00000291-00000000-00000002.sys"].endswith("[bad-magic]")
    assert rejected["C-00000291-00000000-00000002.sys"].startswith("bad magic ")
    if build == "hardened":
        assert rejected["C-00000291-00000000-00000003.sys"] == \
            "template declares 21 input fields, sensor supplies 20 [field-count]"
    assert len(rejected) == len(files) - 1
    assert status["Error"] == ""


def test_a_driver_that_crashes_reading_its_content_never_says_finished(zygotes: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    run = zygotes["vulnerable"].run(_folder(tmp_path, "HarnessSensor", {NAME: CF291}))
    assert run.stop is not None and run.stop.bugcheck is not None and run.stop.bugcheck.code == 0x50
    assert run.driver_status == {"Status": "starting", "Build": "vulnerable", "Finished": 0}


def test_a_missing_content_directory_is_an_empty_status_with_the_error(zygotes: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    run = zygotes["hardened"].run(tmp_path / "no-such-folder")
    status = run.driver_status
    assert status is not None and status["Status"] == "empty" and status["Finished"] == 1
    assert status["Error"] == "cannot read the content directory (status 0xc0000034)"
    assert status["Loaded"] == [] and status["Rejected"] == []


def test_check_target_sys_json_shows_the_status_the_driver_wrote(drivers: dict[str, Path],  # noqa: F811
                                                                  tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_bytes(CF291)
    proc = run_harness("content", "check", str(path), "--sensor", "hardened", "--target", "sys", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["outcome"] == "rejected"
    assert report["driver_status"]["Rejected"] == \
        [f"{NAME}: template declares 21 input fields, sensor supplies 20 [field-count]"]
    assert report["driver_status"]["Finished"] == 1 and report["driver_status"]["Status"] == "empty"


# ------------------------------------------------------------------ online reload

def _reload(zygote: Any, tmp_path: Path, before: bytes, after: bytes) -> Any:
    first = _folder(tmp_path, "first", {NAME: before})
    update = _folder(tmp_path, "update", {NAME: after})
    return zygote.run(first, reload_from=update)


def test_the_hardened_build_keeps_the_last_good_content_when_a_reload_reads_a_bad_update(
        zygotes: dict[str, Any], tmp_path: Path) -> None:
    run = _reload(zygotes["hardened"], tmp_path, GOOD, CF291)
    assert run.stop is None and run.leaks == []
    assert run.reload == {"status": "0x00000000", "error": None}
    assert [s.name for s in run.steps][-4:] == ["port connect", "port message (reload)", "port disconnect",
                                                "filter unload"]
    after = run.console[run.console.index("harness_sensor: reload requested (build=hardened)"):]
    assert f"harness_sensor: {NAME}: rejected: template declares 21 input fields, sensor supplies 20 " \
           "[field-count]; keeping last good content" in after
    # the good instances are still in force: the event after the reload evaluates them
    assert f"harness_sensor: named-pipe event: {GOOD_INSTANCES} instances evaluated, 0 matched" in after
    assert "HARNESS-SENSOR-RELOADED build=hardened files=1 loaded=0 rejected=1" in after
    status = run.driver_status
    assert status["Generation"] == 2 and status["Status"] == "loaded"
    assert status["Instances"] == GOOD_INSTANCES
    assert status["Rejected"] == [f"{NAME}: template declares 21 input fields, sensor supplies 20 "
                                  "[field-count]; keeping last good content"]


def test_the_vulnerable_build_drops_content_a_reload_rejects(zygotes: dict[str, Any], tmp_path: Path) -> None:
    run = _reload(zygotes["vulnerable"], tmp_path, GOOD, BAD_MAGIC)
    assert run.stop is None and run.leaks == []
    after = run.console[run.console.index("harness_sensor: reload requested (build=vulnerable)"):]
    assert "harness_sensor: named-pipe event: 0 instances evaluated, 0 matched" in after
    assert run.driver_status["Instances"] == 0 and run.driver_status["Status"] == "empty"


def test_a_reload_that_reads_the_cf291_update_crashes_the_vulnerable_build(zygotes: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    run = _reload(zygotes["vulnerable"], tmp_path, GOOD, CF291)
    assert run.stop is not None and run.stop.step == "port message (reload)"
    assert run.stop.bugcheck is not None and run.stop.bugcheck.code == 0x50


def test_a_good_update_replaces_the_content_on_both_builds(zygotes: dict[str, Any], tmp_path: Path) -> None:
    for build in BUILDS:
        (tmp_path / build).mkdir()
        run = _reload(zygotes[build], tmp_path / build, BAD_MAGIC, GOOD)
        assert run.stop is None
        assert run.driver_status["Loaded"] == [NAME] and run.driver_status["Rejected"] == []
        assert run.driver_status["Generation"] == 2


def test_a_reload_asked_before_the_first_load_is_refused_and_the_boot_load_still_runs(
        drivers: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from harness.sys_tier.runner import Runner

    first = _folder(tmp_path, "first", {NAME: BAD_MAGIC})
    update = _folder(tmp_path, "update", {NAME: GOOD})
    run = Runner(drivers["hardened"], first, reload_from=update, reload_before_boot_reinit=True).run()
    assert run.stop is None and run.leaks == []
    assert run.reload == {"status": "0xc00000a3", "error": "the driver refused the reload"}  # DEVICE_NOT_READY
    assert not any(line.startswith("harness_sensor: reload requested") for line in run.console)
    names = [s.name for s in run.steps]
    assert names.index("port message (reload)") < names.index("boot driver reinitialization")
    # the one boot load pass ran afterwards (over the folder as it is then)
    assert run.driver_status["Generation"] == 1 and run.driver_status["Loaded"] == [NAME]
