"""The sys tier: the built harnessflt.sys booted under a Windows kernel emulator
(harness/sys_tier, docs/sys-tier.md) must say what the host build of the interpreter says,
file for file, and show what only the real image can: the bugcheck, the callbacks FltMgr
would call, the driver's own console lines, its boot-time behaviour.

Every row of fixtures/content/expected.yaml runs on both builds through both tiers; a
disagreement fails.  Without mingw-w64 or the emulator the tests skip, except under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.content.sensor import check_file
from harness.errors import InputFileError
from harness.paths import CONTENT_FIXTURES

from .conftest import require_tool, run_harness
from .test_spec_outcomes import ROWS as SPEC_ROWS
from .test_windows_driver_pe import BUILD_DIR, BUILDS, TOOLCHAIN_FIX, make

ROWS = yaml.safe_load((CONTENT_FIXTURES / "expected.yaml").read_text())["fixtures"]
CASES = [(row, build) for row in ROWS for build in BUILDS]
HOST_KEYS = {"build", "file", "size", "outcome", "reason", "stage", "reason_code", "offset", "crash"}


def _require_emulator() -> None:
    try:
        import speakeasy  # noqa: F401
    except ImportError:
        message = "speakeasy-emulator-refined is not installed: run `make setup`"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: a missing part fails the run)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def drivers() -> dict[str, Path]:
    """Both builds of the driver, made by `make -C drivers/windows`."""
    _require_emulator()
    require_tool("x86_64-w64-mingw32-gcc", TOOLCHAIN_FIX)
    make()
    return {build: BUILD_DIR / build / "harnessflt.sys" for build in BUILDS}


@pytest.fixture(scope="module")
def zygotes(drivers: dict[str, Path]) -> dict[str, Any]:
    """One emulator setup per build; every check forks it (harness/sys_tier/zygote.py)."""
    from harness.sys_tier.zygote import Zygote

    return {build: Zygote(path) for build, path in drivers.items()}


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its timings."""
    return {**report, "seconds": None, "steps": [{**s, "seconds": None} for s in report["steps"]]}


def sys_check(path: Path, build: str, **options: Any) -> dict[str, Any]:
    from harness.sys_tier.check import check_file_sys

    return check_file_sys(path, build, **options)


def content_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "HarnessSensor"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# --------------------------------------------------------------- every fixture row


@pytest.mark.parametrize(("row", "build"), CASES, ids=[f"{r['file']}-{b}" for r, b in CASES])
def test_host_and_sys_tiers_agree_on_every_fixture(zygotes: dict[str, Any], row: dict[str, Any],
                                                   build: str) -> None:
    path = CONTENT_FIXTURES / row["file"]
    emulated = sys_check(path, build, zygote=zygotes[build])
    host = check_file(path, build)
    assert emulated["outcome"] == row[build], emulated["reason"]
    assert (emulated["outcome"], emulated["reason_code"], emulated["stage"]) == \
        (host.outcome, host.reason_code, host.raw["stage"]), (emulated["reason"], host.reason)
    if host.outcome == "rejected":
        assert emulated["reason"] == host.reason
    if host.outcome == "loaded":
        assert emulated["event"]["matched"] == host.raw["event"]["matched"]
        assert emulated["reason"] == host.reason
    if host.outcome == "crash":
        assert host.crash is not None
        crash = emulated["crash"]
        assert (crash["function"], crash["region"], crash["stage"]) == \
            (host.crash["function"], host.crash["region"], host.crash["stage"])
        assert crash.get("buffer_offset") == host.crash.get("buffer_offset")
        bugcheck = emulated["bugcheck"]
        assert (bugcheck["code"], bugcheck["name"]) == ("0x50", "PAGE_FAULT_IN_NONPAGED_AREA")
        p1, p2, p3, p4 = (int(p, 16) for p in bugcheck["parameters"])
        assert (p1, p2, p3, p4) == (int(crash["address"], 16), 0, int(crash["ip"], 16), 2)
        assert emulated["console"][-1].endswith("instances)") or "loaded" not in emulated["console"][-1]
    else:
        assert emulated["bugcheck"] is None and emulated["leaks"] == [], emulated["leaks"]
        assert emulated["marker"] == {"build": build, "files": "1",
                                      "loaded": "1" if host.outcome == "loaded" else "0",
                                      "rejected": "1" if host.outcome == "rejected" else "0"}


@pytest.mark.parametrize("spec_row", SPEC_ROWS, ids=[row[0] for row in SPEC_ROWS])
def test_files_written_from_the_spec_give_its_outcome_and_bugcheck_0x50(
        zygotes: dict[str, Any], spec_row: tuple[str, bytes, str, str], tmp_path: Path) -> None:
    """The spec's outcome table, files built with struct (tests/test_spec_outcomes.py)."""
    _name, data, vulnerable, hardened = spec_row
    path = tmp_path / "C-00000291-00000000-00000291.sys"
    path.write_bytes(data)
    for build, expected in (("vulnerable", vulnerable), ("hardened", hardened)):
        report = sys_check(path, build, zygote=zygotes[build])
        assert report["outcome"] == expected, report["reason"]
        assert (report["bugcheck"] or {}).get("code") == ("0x50" if expected == "crash" else None)


def test_a_reused_setup_gives_what_a_fresh_machine_gives(zygotes: dict[str, Any]) -> None:
    """A crash, a rejection and a load through one setup, then a fresh machine for the load:
    the same report, so nothing a file did survived into the next check."""
    zygote = zygotes["vulnerable"]
    for name in ("cf291-field21.sys", "bad-crc.sys"):
        sys_check(CONTENT_FIXTURES / name, "vulnerable", zygote=zygote)
    reused = sys_check(CONTENT_FIXTURES / "good.sys", "vulnerable", zygote=zygote)
    fresh = sys_check(CONTENT_FIXTURES / "good.sys", "vulnerable")
    assert _stable(reused) == _stable(fresh)


# ------------------------------------------------------------ what FltMgr sees


def test_the_filter_registration_is_read_with_the_wdk_layout(drivers: dict[str, Path]) -> None:
    report = sys_check(CONTENT_FIXTURES / "good.sys", "hardened")
    registration = report["filter"]["registration"]
    assert (registration["size"], registration["version"], registration["flags"]) == (0x70, "0x0203", "0x2")
    assert registration["callbacks"] == {"FilterUnloadCallback": "hs_unload",
                                         "InstanceSetupCallback": "hs_instance_setup",
                                         "InstanceQueryTeardownCallback": "hs_instance_query_teardown"}
    assert registration["operations"] == [{"major": "0x01", "pre": "hs_pre_create_named_pipe", "post": None}]
    assert report["filter"]["volumes"] == {"ntfs": "declined", "npfs": "attached"}
    steps = [s["step"] for s in report["steps"]]
    assert steps[-2:] == ["pre-create (IRP_MJ_CREATE_NAMED_PIPE)", "filter unload"]
    pre = next(s for s in report["steps"] if s["step"].startswith("pre-create"))
    assert "FltGetFileNameInformation" in pre["calls"] and "FltReleaseFileNameInformation" in pre["calls"]
    assert report["image"] == "unloaded" and report["leaks"] == []


def test_a_registration_fltmgr_would_refuse_stops_the_driver(drivers: dict[str, Path], tmp_path: Path) -> None:
    """FLT_REGISTRATION.Size patched from 0x70 to 0x68 in a copy of the image."""
    image = bytearray(drivers["hardened"].read_bytes())
    header = struct.pack("<HHI", 0x70, 0x0203, 0x2)
    assert image.count(header) == 1
    image[image.index(header):image.index(header) + 2] = struct.pack("<H", 0x68)
    patched = tmp_path / "harnessflt.sys"
    patched.write_bytes(bytes(image))
    report = sys_check(CONTENT_FIXTURES / "good.sys", "hardened", driver=patched)
    assert report["outcome"] == "not-started"
    assert "Size is 104" in report["filter"]["registration_error"]
    assert report["console"] == ["harness_sensor: not started (status 0xc000000d)"]


# ------------------------------------------------------------------- the file system


def test_a_content_folder_is_listed_in_pages_and_loaded_in_sequence_order(drivers: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    from harness.sys_tier.check import run_folder

    good = (CONTENT_FIXTURES / "good.sys").read_bytes()
    folder = content_dir(tmp_path, {
        "C-00000291-00000000-00000040.sys": good,
        "C-00000291-00000001-00000031.sys": good,
        "C-00000291-00000000-00000031.sys": (CONTENT_FIXTURES / "cf291-wildcard.sys").read_bytes(),
        "c-00000291-00000000-00000050.sys": good,  # names match case included
        "C-00000292-00000000-00000001.sys": good,  # another channel
        "README.txt": b"notes",
    })
    (folder / "C-00000291-00000000-00000045.sys").mkdir()
    run = run_folder(folder, "hardened")
    assert run.stop is None
    verdicts = [line.split(": ", 2)[1:] for line in run.console if ".sys: " in line or ".txt: " in line]
    loaded = [name for name, text in verdicts if text.startswith(("loaded", "rejected"))]
    assert loaded == ["C-00000291-00000000-00000031.sys", "C-00000291-00000001-00000031.sys",
                      "C-00000291-00000000-00000040.sys", "C-00000291-00000000-00000045.sys"]
    assert dict(verdicts)["C-00000291-00000000-00000031.sys"].endswith("[field-count]")
    assert dict(verdicts)["C-00000291-00000000-00000045.sys"] == "rejected: not a regular file [not-regular-file]"
    assert {name for name, text in verdicts if text.startswith("ignored")} == \
        {"c-00000291-00000000-00000050.sys", "C-00000292-00000000-00000001.sys", "README.txt"}
    assert "HARNESS-SENSOR-LOADED build=hardened files=4 loaded=2 rejected=2" in run.console
    listing = next(s for s in run.steps if s.name == "boot driver reinitialization").calls
    assert listing.count("ZwQueryDirectoryFile") >= 4  # 9 entries, 3 a page, then NO_MORE_FILES
    assert run.leaks == []


def test_a_listing_returned_one_entry_at_a_time_loads_the_same(drivers: dict[str, Path], tmp_path: Path) -> None:
    """NT may return fewer entries than fit; the driver must go on until STATUS_NO_MORE_FILES."""
    from harness.sys_tier.check import run_folder

    good = (CONTENT_FIXTURES / "good.sys").read_bytes()
    folder = content_dir(tmp_path, {f"C-00000291-00000000-{n:08d}.sys": good for n in range(1, 6)})
    runs = {n: run_folder(folder, "vulnerable", listing_entries=n) for n in (1, 64)}
    for run in runs.values():
        assert run.stop is None and "HARNESS-SENSOR-LOADED build=vulnerable files=5 loaded=5 rejected=0" in run.console
    calls = {n: next(s for s in run.steps if s.name == "boot driver reinitialization").calls.count("ZwQueryDirectoryFile")
             for n, run in runs.items()}
    assert calls == {1: 8, 64: 2}  # ".", "..", 5 files, then NO_MORE_FILES; or one page, then NO_MORE_FILES


# ------------------------------------------------------------- boot and unload


def test_a_boot_start_reads_content_after_the_boot_devices_started(drivers: dict[str, Path]) -> None:
    report = sys_check(CONTENT_FIXTURES / "good.sys", "hardened")
    calls = {s["step"]: s["calls"] for s in report["steps"]}
    assert "IoGetBootDiskInformation" not in calls["DriverEntry"]  # documented for reinitialization
    assert "IoGetBootDiskInformation" in calls["driver reinitialization"]
    assert "ZwReadFile" in calls["boot driver reinitialization"]
    assert "ZwOpenFile" not in calls["driver reinitialization"]
    assert report["console"][0].startswith("harness_sensor: boot start (build=hardened)")


def test_either_order_of_the_two_reinitialization_queues_loads_once_and_lets_go(
        drivers: dict[str, Path], tmp_path: Path) -> None:
    """Which queue Windows runs first during boot was not seen here: the driver must not care."""
    from harness.sys_tier.check import run_folder

    folder = content_dir(tmp_path, {"C-00000291-00000000-00000001.sys": (CONTENT_FIXTURES / "good.sys").read_bytes()})
    for first in (False, True):
        run = run_folder(folder, "hardened", boot_queue_first=first)
        assert run.stop is None
        assert sum("loaded (6 instances)" in line for line in run.console) == 1
        queues = [s.name for s in run.steps if "reinitialization" in s.name]
        assert queues == (["boot driver reinitialization", "driver reinitialization"] if first else
                          ["driver reinitialization", "boot driver reinitialization"])
        assert run.image_unloaded and run.leaks == []


def test_a_load_after_boot_reads_content_at_once(drivers: dict[str, Path]) -> None:
    report = sys_check(CONTENT_FIXTURES / "good.sys", "vulnerable", boot_start=False)
    assert report["outcome"] == "loaded"
    calls = {s["step"]: s["calls"] for s in report["steps"]}
    assert "boot driver reinitialization" not in calls  # never runs after boot
    assert "ZwReadFile" in calls["driver reinitialization"]
    assert report["console"][0] == "harness_sensor: started after boot (build=vulnerable): reading content now"
    assert report["image"] == "unloaded" and report["leaks"] == []


def test_a_mandatory_unload_before_the_boot_reinitialization_leaves_no_callback(
        drivers: dict[str, Path], tmp_path: Path) -> None:
    from harness.sys_tier.check import run_folder

    folder = content_dir(tmp_path, {"C-00000291-00000000-00000001.sys": (CONTENT_FIXTURES / "good.sys").read_bytes()})
    run = run_folder(folder, "hardened", unload_before_boot_reinit=True)
    assert run.stop is None, run.stop
    assert [s.name for s in run.steps] == ["DriverEntry", "driver reinitialization", "filter unload (mandatory)",
                                           "boot driver reinitialization"]
    assert run.console[-1] == "harness_sensor: unloaded" and not any("loaded (" in line for line in run.console)
    reinit = run.steps[-1].calls
    assert reinit == ["ObDereferenceObjectDeferDelete"]  # only lets the image go
    assert run.image_unloaded and run.leaks == []


def test_a_routine_queued_past_the_unload_of_its_image_is_bugcheck_0xce(
        drivers: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's side of the test above: without the driver's own reference on its driver
    object (as the driver had it before), the image is gone when the boot queue runs."""
    from harness.sys_tier.check import run_folder
    from harness.sys_tier.iomanager import IoManagerModel

    monkeypatch.setattr(IoManagerModel, "_reference", lambda self, a: a[0])
    folder = content_dir(tmp_path, {"C-00000291-00000000-00000001.sys": b""})
    run = run_folder(folder, "hardened", unload_before_boot_reinit=True)
    assert run.stop is not None and run.stop.bugcheck is not None
    assert run.stop.bugcheck.name == "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"
    assert (run.stop.step, run.stop.function) == ("boot driver reinitialization", "hs_boot_reinit")


def _endless_image(drivers: dict[str, Path], tmp_path: Path, function: str) -> Path:
    """A copy of the hardened image whose `function` starts with `jmp $` (EB FE)."""
    import pefile

    source = drivers["hardened"]
    symbols = {parts[2]: int(parts[0], 16) for parts in
               (line.split() for line in source.with_suffix(".syms").read_text().splitlines()) if len(parts) == 3}
    pe = pefile.PE(str(source), fast_load=True)
    offset = pe.get_offset_from_rva(symbols[function] - pe.OPTIONAL_HEADER.ImageBase)
    image = bytearray(source.read_bytes())
    image[offset:offset + 2] = b"\xeb\xfe"
    patched = tmp_path / "harnessflt.sys"
    patched.write_bytes(bytes(image))
    for suffix in (".map", ".syms"):
        shutil.copy(source.with_suffix(suffix), patched.with_suffix(suffix))
    return patched


def test_what_unload_leaves_behind_is_reported(drivers: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The leak check's own test: with ZwClose and FltReleaseFileNameInformation doing nothing,
    the handles (files and registry keys) and the name information the driver let go of are
    still counted as held."""
    from harness.sys_tier.check import run_folder
    from harness.sys_tier.filesystem import FileSystemModel
    from harness.sys_tier.fltmgr import FltMgrModel

    from harness.sys_tier.registry import RegistryModel

    monkeypatch.setattr(FileSystemModel, "close", lambda self, a: 0)
    monkeypatch.setattr(RegistryModel, "_close", lambda self, a: 0)
    monkeypatch.setattr(FltMgrModel, "_release_name", lambda self, a: None)
    folder = content_dir(tmp_path, {"C-00000291-00000000-00000001.sys": (CONTENT_FIXTURES / "good.sys").read_bytes()})
    leaks = run_folder(folder, "hardened").leaks
    assert sum(leak.startswith("handle ") for leak in leaks) == 2  # the directory and the file
    assert any("(C-00000291-00000000-00000001.sys) not closed" in leak for leak in leaks)
    assert "FLT_FILE_NAME_INFORMATION for \\Device\\NamedPipe\\harness-synthetic not released" in leaks
    # the status key: Parameters and Parameters\State opened at DriverEntry and after the load
    assert sum(leak.startswith("registry handle ") and leak.endswith("\\Parameters\\State) not closed")
               for leak in leaks) == 2


@pytest.mark.parametrize("budget", [{"max_instructions": 2_000_000}, {"max_instructions": -1, "timeout_s": 1.0}],
                         ids=["instructions", "time"])
def test_a_driver_that_runs_away_stops_as_hang_naming_the_function(
        drivers: dict[str, Path], tmp_path: Path, budget: dict[str, Any]) -> None:
    looping = _endless_image(drivers, tmp_path, "hs_boot_reinit")
    report = sys_check(CONTENT_FIXTURES / "good.sys", "hardened", driver=looping, **budget)
    assert report["outcome"] == "hang"
    assert report["hang"] == {"step": "boot driver reinitialization", "function": "hs_boot_reinit",
                              "location": "harnessflt.sys!hs_boot_reinit+0x0"}
    assert report["bugcheck"] is None and report["crash"] is None


def test_a_budget_too_small_for_the_work_is_a_hang_inside_it(drivers: dict[str, Path]) -> None:
    report = sys_check(CONTENT_FIXTURES / "good.sys", "vulnerable", max_instructions=20_000)
    assert report["outcome"] == "hang"
    assert report["hang"]["step"] == "boot driver reinitialization"
    assert report["hang"]["function"].startswith(("hs_", "chf_"))


# ------------------------------------------------------------------ the command line


def test_check_target_sys_json_is_the_host_object_plus_the_bugcheck(drivers: dict[str, Path]) -> None:
    path = CONTENT_FIXTURES / "cf291-field21.sys"
    proc = run_harness("content", "check", path, "--sensor", "vulnerable", "--target", "sys", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    host = json.loads(run_harness("content", "check", path, "--sensor", "vulnerable", "--json").stdout)
    assert HOST_KEYS | {"sensor", "spec_expects"} <= set(report) and set(host) - {"instances", "event"} <= set(report)
    assert report["outcome"] == host["outcome"] == report["spec_expects"]["outcome"] == "crash"
    assert report["bugcheck"]["code"] == "0x50" and len(report["bugcheck"]["parameters"]) == 4
    assert report["crash"]["function"] == "chf_match_criterion"
    assert report["console"][-1] == "harness_sensor: C-00000291-00000000-00000001.sys: loaded (6 instances)"
    assert "52 bits" in report["note"]
    text = run_harness("content", "check", path, "--sensor", "hardened", "--target", "sys")
    assert text.returncode == 0 and text.stdout.startswith(f"{path}: rejected (hardened driver, emulated):")
    assert text.stdout.rstrip().endswith("[field-count]")


def _one_line_exit_2(proc: Any, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_bad_input_is_one_line_and_exit_2(drivers: dict[str, Path], tmp_path: Path) -> None:
    good = CONTENT_FIXTURES / "good.sys"
    text = tmp_path / "notes.sys"
    text.write_text("not a driver\n")
    _one_line_exit_2(run_harness("content", "check", good, "--sensor", "hardened", "--target", "sys",
                                 "--driver", text), str(text), "not a PE image", "make -C drivers windows")
    console = bytearray(drivers["hardened"].read_bytes())
    pe_offset = struct.unpack_from("<I", console, 0x3C)[0]
    struct.pack_into("<H", console, pe_offset + 24 + 68, 3)  # OptionalHeader.Subsystem: console
    gui = tmp_path / "console.sys"
    gui.write_bytes(bytes(console))
    _one_line_exit_2(run_harness("content", "check", good, "--sensor", "hardened", "--target", "sys",
                                 "--driver", gui), str(gui), "not native")
    missing = tmp_path / "gone" / "harnessflt.sys"
    _one_line_exit_2(run_harness("content", "check", good, "--sensor", "hardened", "--target", "sys",
                                 "--driver", missing), str(missing), "make -C drivers windows")
    _one_line_exit_2(run_harness("content", "check", tmp_path / "none.sys", "--sensor", "hardened",
                                 "--target", "sys"), "none.sys", "no such file")
    _one_line_exit_2(run_harness("content", "check", tmp_path, "--sensor", "hardened", "--target", "sys"),
                     str(tmp_path), "is a directory")


def test_a_missing_or_stale_build_names_the_make_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.sys_tier.check as check

    monkeypatch.setattr(check, "DRIVERS_BUILD", tmp_path / "build")
    with pytest.raises(InputFileError, match=r"harnessflt.sys: the hardened driver is not built: "
                                             r"build it with `make -C drivers windows`"):
        check.driver_path("hardened")
    image = tmp_path / "build" / "windows" / "hardened" / "harnessflt.sys"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"MZ")
    source = tmp_path / "windows" / "harnessflt.c"
    source.parent.mkdir()
    source.write_text("/* edited after the build */\n")
    os.utime(image, (1, 1))
    monkeypatch.setattr(check, "DRIVERS", tmp_path)
    with pytest.raises(InputFileError, match=r"older than .*harnessflt\.c: the hardened driver is stale: "
                                             r"build it with `make -C drivers windows`"):
        check.driver_path("hardened")
    os.utime(image)
    assert check.driver_path("hardened") == image
    assert shutil.which("make")  # the fix it names is a command this host has
