"""Windows bugchecks from the host's three channels: the EMS BLUESCREEN record (and STOP
text) on COM1, the kernel debugger's text, and libvirt's `panic hyper-v` domain-log line.

No Windows VM ran here.  Every transcript is built from the documented format of its
channel; fixtures/logs/windows/README.md lists the source of each format, and the
builders below name theirs:

* EMS record: HdlspSendBlueScreenInfo's strings (decompiled x64 ntoskrnl) and the
  Avocent/Cyclades ACS manual's `<BP>` sample; the PARAMETERn properties are our
  assumption (no source shows them).
* STOP text: WinDbg help "Blue Screen Data" (`STOP: 0x00000079 (0x00000002, ...)`)
  and the classic screen's `***  x.sys - Address ... base at ..., DateStamp ...`.
* kd: `*** Fatal System Error: 0x00000050` / `(p1,p2,p3,p4)` / `Driver at fault:`
  as in published kd transcripts; `BugCheck 9F, {...}` from blue-screen-data.md.
* Hyper-V: `panic hyper-v: arg1='0x5a', arg2='0x1', ...` (kubevirt's panic_info.go
  test; qemu-devel 2025-06 report), arg1 = STOP code, arg2..arg5 = parameters 1..4
  (qemu/qemu:qapi/run-state.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.crash.bugcheck_codes import BUGCHECKS, by_name, lookup, normalize_code
from harness.crash.windows import (
    WindowsConsoleParser,
    fuse_reports,
    is_crash_start,
    parse_domain_log,
    parse_reports,
)
from harness.families.windows import MARKERS, WindowsFamily
from harness.monitor.monitor import Monitor
from harness.triage import detect_family, triage_files, triage_text

from .conftest import REPO, run_harness

LOGS = REPO / "fixtures" / "logs" / "windows"
LINUX_LOGS = REPO / "fixtures" / "logs" / "linux"

REQUIRED = {
    0x0A: "IRQL_NOT_LESS_OR_EQUAL", 0x1E: "KMODE_EXCEPTION_NOT_HANDLED", 0x3B: "SYSTEM_SERVICE_EXCEPTION",
    0x50: "PAGE_FAULT_IN_NONPAGED_AREA", 0x7B: "INACCESSIBLE_BOOT_DEVICE",
    0x7E: "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", 0xC2: "BAD_POOL_CALLER",
    0xC4: "DRIVER_VERIFIER_DETECTED_VIOLATION", 0xD1: "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
    0xD6: "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION", 0xEF: "CRITICAL_PROCESS_DIED",
    0xF7: "DRIVER_OVERRAN_STACK_BUFFER", 0x139: "KERNEL_SECURITY_CHECK_FAILURE",
}
CODES = sorted(BUGCHECKS)
MODULE_LINE = "***  harnessflt.sys - Address FFFFF80123451A2B base at FFFFF80123450000, DateStamp 66a1b2c3"
SAC_BANNER = ["", "Computer is booting, SAC started and initialized.", "",
              'Use the "ch -?" command for information about using channels.',
              'Use the "?" command for general help.', "", "", "SAC>"]


def params_for(code: int) -> tuple[int, int, int, int]:
    """Four distinct parameters per code, 64-bit, some with the top bits set."""
    return (0xFFFF840500000000 | code, code & 0xF, 0xFFFFF80123450000 + code, 0x2)


def hex16(values: tuple[int, ...] | list[int]) -> list[str]:
    return [f"0x{v:016x}" for v in values]


# --- transcript builders (one per channel) -------------------------------------------

def ems_record(code: int, *, wrapper: bool = True, params: tuple[int, ...] | None = None,
               split: bool = False) -> list[str]:
    """The BLUESCREEN record as HdlspSendBlueScreenInfo sends it: BEL BEL BEL <?xml> BEL <BP>,
    then each element after a CR LF, STOPCODE as "0x%0X"."""
    lines = ["\x07\x07\x07<?xml>\x07<BP>\r"] if wrapper else []
    lines.append('<INSTANCE CLASSNAME="BLUESCREEN">\r')
    if split:  # the Avocent sample's layout: the value's closing tag cut across lines
        lines += ['<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x%X"</' % code, "VALUE>", "</PROPERTY>"]
    else:
        lines.append('<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x%X"</VALUE></PROPERTY>\r' % code)
    for n, value in enumerate(params or (), start=1):  # assumed names: no source shows these
        lines.append(f'<PROPERTY NAME="PARAMETER{n}" TYPE="string"><VALUE>"0x{value:X}"</VALUE></PROPERTY>\r')
    lines += ["<machine-info>\r", "<name>WIN-HARNESS01</name>\r", "<os-version>10.0</os-version>\r",
              "</machine-info>\r", "</INSTANCE>\r"]
    if wrapper:
        lines.append("</BP>\x07\r")
    return lines


def stop_text(code: int, params: tuple[int, ...], module: bool = True) -> list[str]:
    name = lookup(code).name if lookup(code) else ""
    return ["A problem has been detected and Windows has been shut down to prevent damage", "",
            name, "", "Technical information:", "",
            "*** STOP: 0x%08X (%s)" % (code, ",".join("0x%016X" % p for p in params)), ""] + \
        ([MODULE_LINE, ""] if module else []) + ["Beginning dump of physical memory.",
                                                  "Physical memory dump complete."]


def kd_text(code: int, params: tuple[int, ...], one_line: bool = False) -> list[str]:
    plist = "(%s)" % ",".join("0x%016X" % p for p in params)
    head = "*** Fatal System Error: 0x%08X" % code
    return ["KDTARGET: Refreshing KD connection", ""] + \
        ([f"{head} {plist}"] if one_line else [head, "                       " + plist]) + \
        ["", "Driver at fault: ", "***   harnessflt.sys - Address FFFFF80123451A2B base at FFFFF80123450000, "
         "DateStamp 66a1b2c3", ".", "", "Break instruction exception - code 80000003 (first chance)", "",
         "A fatal system error has occurred.",
         "Debugger entered on first try; Bugcheck callbacks have not been invoked.", "",
         "nt!DbgBreakPointWithStatus:", "fffff801`5a3fd0b0 cc              int     3"]


def hyperv_line(code: int, params: tuple[int, ...], quoted: bool = True) -> str:
    q = "'" if quoted else ""
    args = ", ".join(f"arg{n}={q}0x{v:x}{q}" for n, v in enumerate((code, *params), start=1))
    return f"2026-11-23 05:01:12.345+0000: panic hyper-v: {args}"


def only(reports: list) -> object:
    assert len(reports) == 1, [r.title for r in reports]
    return reports[0]


# --- the table -------------------------------------------------------------------------

def test_the_table_names_every_required_code_and_says_what_its_parameters_mean() -> None:
    for code, name in REQUIRED.items():
        entry = BUGCHECKS[code]
        assert entry.name == name and entry.hex == f"0x{code:X}"
        assert len(entry.parameters) == 4 and all(entry.parameters)
        assert entry.source.startswith("MicrosoftDocs/windows-driver-docs:") and f"0x{code:x}--" in entry.source
    assert by_name("page fault in nonpaged area") is BUGCHECKS[0x50]


@pytest.mark.parametrize("variant, base", [(0x1000007E, 0x7E), (0x1000008E, 0x8E), (0x1000000A, 0x0A),
                                           (0x10001234, 0x10001234), (0x50, 0x50)])
def test_m_variants_normalise_to_their_base_code(variant: int, base: int) -> None:
    assert normalize_code(variant) == base


# --- each code through each channel ----------------------------------------------------

def check(report, code: int, params: tuple[int, ...], module: str | None = "harnessflt.sys") -> None:
    name = BUGCHECKS[code].name
    assert report.kind == "bugcheck" and report.family == "windows" and report.panic and report.fatal
    assert report.stop_code == code and report.stop_name == name
    assert report.parameters == hex16(params)
    assert report.title == (f"{name} (0x{code:X}) in {module}" if module else f"{name} (0x{code:X})")
    assert report.module == module
    assert not report.corrupted, report.corrupted_reason
    assert report.to_json()["stop_code_hex"] == f"0x{code:X}"


@pytest.mark.parametrize("code", CODES, ids=[f"0x{c:X}" for c in CODES])
def test_ems_record_and_stop_text(code: int) -> None:
    params = params_for(code)
    check(only(parse_reports("\n".join(SAC_BANNER + ems_record(code) + stop_text(code, params)))), code, params)


@pytest.mark.parametrize("code", CODES, ids=[f"0x{c:X}" for c in CODES])
def test_ems_record_with_parameter_properties(code: int) -> None:
    params = params_for(code)
    report = only(parse_reports("\n".join(SAC_BANNER + ems_record(code, params=params))))
    check(report, code, params, module=None)


@pytest.mark.parametrize("code", CODES, ids=[f"0x{c:X}" for c in CODES])
def test_kernel_debugger_text(code: int) -> None:
    params = params_for(code)
    check(only(parse_reports("\n".join(kd_text(code, params)))), code, params)
    check(only(parse_reports("\n".join(kd_text(code, params, one_line=True)))), code, params)


@pytest.mark.parametrize("code", CODES, ids=[f"0x{c:X}" for c in CODES])
def test_hyperv_domain_log_line(code: int) -> None:
    params = params_for(code)
    check(only(parse_domain_log(hyperv_line(code, params))), code, params, module=None)
    check(only(parse_domain_log(hyperv_line(code, params, quoted=False))), code, params, module=None)


def test_the_documented_record_alone_gives_the_code_but_no_parameters() -> None:
    report = only(parse_reports((LOGS / "ems-record-only-0x50.log").read_text()))
    assert (report.stop_code, report.stop_name, report.parameters) == (0x50, "PAGE_FAULT_IN_NONPAGED_AREA", [])
    assert report.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)" and not report.corrupted


@pytest.mark.parametrize("wrapper, split", [(True, True), (False, False), (False, True)])
def test_the_record_may_lack_its_wrapper_or_be_split_across_lines(wrapper: bool, split: bool) -> None:
    params = params_for(0xD1)
    text = "\n".join(ems_record(0xD1, wrapper=wrapper, split=split, params=params))
    check(only(parse_reports(text)), 0xD1, params, module=None)


def test_a_record_all_on_one_line_is_read_too() -> None:
    text = "".join(line.rstrip("\r") for line in ems_record(0x7B))
    assert only(parse_reports(text)).title == "INACCESSIBLE_BOOT_DEVICE (0x7B)"


def test_debugger_summary_and_analyze_lines() -> None:
    text = "\n".join(["BugCheck 9F, {3, ffffe000f38c06a0, fffff803c596cad0, ffffe000f46a1010}", "",
                      "Probably caused by : hidusb.sys ( hidusb!HumCallUSB+4a )"])
    report = only(parse_reports(text))
    assert report.title == "BUGCHECK 0x9F in hidusb.sys" and report.stop_name is None
    assert report.parameters == hex16([3, 0xffffe000f38c06a0, 0xfffff803c596cad0, 0xffffe000f46a1010])
    assert report.function == "HumCallUSB"


def test_the_kd_fixture_normalises_the_m_variant_and_names_the_function() -> None:
    report = only(parse_reports((LOGS / "kd-fatal-0x1000007e.log").read_text()))
    assert report.stop_code == 0x7E and report.title == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0x7E) in harnessflt.sys"
    assert report.function == "ChfMatchCriterion" and report.ip == "0xfffff80123451a2b"
    assert "*** Fatal System Error: 0x1000007e" in report.text  # the raw code stays in the text


def test_windows_10_stop_screen_lines() -> None:
    report = only(parse_reports("Your PC ran into a problem and needs to restart.\n"
                                "Stop code: CRITICAL_PROCESS_DIED\nWhat failed: harnessflt.sys\n"))
    assert report.title == "CRITICAL_PROCESS_DIED (0xEF) in harnessflt.sys" and report.parameters == []


def test_unknown_codes_keep_their_number_in_the_title() -> None:
    params = (1, 2, 3, 4)
    kd = only(parse_reports("\n".join(kd_text(0x1234ABCD, params))))
    hv = only(parse_domain_log(hyperv_line(0x1234ABCD, params)))
    ems = only(parse_reports("\n".join(ems_record(0x1234ABCD))))
    assert kd.title == "BUGCHECK 0x1234ABCD in harnessflt.sys" and kd.stop_name is None
    assert hv.title == ems.title == "BUGCHECK 0x1234ABCD" and hv.stop_code == 0x1234ABCD


# --- address and ip, as the docs define them ---------------------------------------------

@pytest.mark.parametrize("code, address_index, ip_index", [
    (0x0A, 0, 3), (0x50, 0, 2), (0xD1, 0, 3), (0xD6, 0, 2), (0x7E, None, 1), (0x3B, None, 1),
    (0x7B, None, None), (0xEF, None, None)])
def test_address_and_ip_come_from_the_parameters_the_docs_name(code: int, address_index: int | None,
                                                                ip_index: int | None) -> None:
    params = params_for(code)
    report = only(parse_domain_log(hyperv_line(code, params)))
    assert report.address == (hex16(params)[address_index] if address_index is not None else None)
    assert report.ip == (hex16(params)[ip_index] if ip_index is not None else None)


def test_0x1e_has_an_address_only_for_an_access_violation() -> None:
    violation = only(parse_domain_log(hyperv_line(0x1E, (0xC0000005, 0xFFFFF80123451A2B, 0, 0xFFFF840500000074))))
    breakpoint_ = only(parse_domain_log(hyperv_line(0x1E, (0x80000003, 0xFFFFF80123451A2B, 0, 0))))
    assert violation.address == "0xffff840500000074" and breakpoint_.address is None


# --- cut and garbled records ---------------------------------------------------------------

@pytest.mark.parametrize("text, title", [
    # the record cut after its STOPCODE (serial capture ended, or the guest reset)
    ("\n".join(ems_record(0x50)[:4]), "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"),
    # cut inside the STOPCODE value: "0x5" may be the start of "0x50", so no code
    ('\x07\x07\x07<?xml>\x07<BP>\n<INSTANCE CLASSNAME="BLUESCREEN">\n<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x5',
     "BUGCHECK (stop code unknown)"),
    # a garbled value
    ('<INSTANCE CLASSNAME="BLUESCREEN">\n<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x5G"</VALUE></PROPERTY>\n'
     "</INSTANCE>", "BUGCHECK (stop code unknown)"),
    # the debugger's parameter line cut
    ("*** Fatal System Error: 0x000000D1\n   (0xFFFF840500000074,0x0000000000000002,0x00000",
     "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1)"),
    # the debugger's parameter line missing
    ("*** Fatal System Error: 0x000000D1\nsomething else entirely", "DRIVER_IRQL_NOT_LESS_OR_EQUAL (0xD1)"),
    # a garbled parameter on the STOP screen
    ("*** STOP: 0x000000EF (0xFFFFB40C2D7A6080,0x00000000000000ZZ,0x0,0x0)", "CRITICAL_PROCESS_DIED (0xEF)"),
])
def test_cut_or_garbled_console_records_are_corrupted_with_the_title_right_when_the_code_was_read(
        text: str, title: str) -> None:
    report = only(parse_reports(text))
    assert report.corrupted and report.corrupted_reason and report.title == title


@pytest.mark.parametrize("line, title", [
    ("panic hyper-v: arg1='0x50', arg2='0xffff840500000074', arg3='0x0', arg4='0xfffff8", "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"),
    ("panic hyper-v: arg1='0x50', arg2='0xffff840500000074'", "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"),
    ("panic hyper-v: arg1='0x5", "BUGCHECK (stop code unknown)"),
    ("panic hyper-v: arg1='0xzz', arg2='0x1', arg3='0x2', arg4='0x3', arg5='0x4'", "BUGCHECK (stop code unknown)"),
    ("HV crash parameters: (0x50 0xffff840500000074 0x0", "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"),
])
def test_cut_or_garbled_hyperv_lines_are_corrupted(line: str, title: str) -> None:
    report = only(parse_domain_log(line))
    assert report.corrupted and report.title == title


def test_a_record_cut_by_the_next_boot_is_corrupted_and_the_next_boot_is_judged() -> None:
    verdict = triage_text((LOGS / "ems-truncated-then-healthy.log").read_text())
    assert verdict.verdict == "crashed" and verdict.boots == 2
    assert verdict.crash is not None and verdict.crash.corrupted
    assert verdict.crash.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"
    assert "truncated" in (verdict.crash.corrupted_reason or "")


# --- one report per crash ----------------------------------------------------------------

def test_two_channels_in_one_stream_make_one_report_and_two_records_two_reports() -> None:
    p = params_for(0x50)
    one = parse_reports("\n".join(ems_record(0x50) + stop_text(0x50, p)))
    two = parse_reports("\n".join(ems_record(0x50) + ems_record(0x50)))  # no boot line between
    other = parse_reports("\n".join(kd_text(0x50, p) + ems_record(0x7E)))
    assert len(one) == 1 and len(two) == 2 and [r.stop_code for r in other] == [0x50, 0x7E]


def test_fusion_keeps_the_hyperv_parameters_and_the_text_module() -> None:
    serial = parse_reports((LOGS / "ems-stop-line-cut-0x50.log").read_text())
    hyperv = parse_domain_log((LOGS / "domain-0x50.log").read_text())
    assert only(serial).corrupted and only(serial).parameters == []
    fused, merged = fuse_reports(serial, hyperv)
    report = only(fused)
    assert merged == [0] and not report.corrupted
    assert report.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in harnessflt.sys"
    assert report.parameters == hex16((0xffff840500000074, 0, 0xfffff80123451a2b, 2))
    assert report.address == "0xffff840500000074" and report.module == "harnessflt.sys"


def test_fusion_matches_in_order_by_stop_code_and_keeps_what_does_not_match() -> None:
    serial = parse_reports("\n".join(ems_record(0x50) + ems_record(0x7E)))
    hyperv = parse_domain_log("\n".join([hyperv_line(0x7E, params_for(0x7E)), hyperv_line(0xEF, params_for(0xEF))]))
    fused, merged = fuse_reports(serial, hyperv)
    assert [r.stop_code for r in fused] == [0x50, 0x7E, 0xEF] and merged == [1]
    assert fused[0].parameters == [] and fused[1].parameters == hex16(params_for(0x7E))


def test_libvirt_and_qemu_lines_of_one_panic_are_one_report() -> None:
    p = params_for(0x50)
    qemu = "HV crash parameters: (%s)" % " ".join(f"0x{v:x}" for v in (0x50, *p))
    reports = parse_domain_log("\n".join([hyperv_line(0x50, p), qemu, hyperv_line(0x50, p)]))
    assert len(reports) == 2 and all(not r.corrupted for r in reports)


# --- the family and the monitor --------------------------------------------------------------

def feed(monitor: Monitor, lines: list[str], t: float) -> float:
    for line in lines:
        t += 0.01
        monitor.observe_line(line, t)
    return t


def test_a_boot_loop_transcript_is_a_boot_loop_with_one_title() -> None:
    monitor = Monitor(WindowsFamily(), boot_loop_threshold=2)
    t = feed(monitor, SAC_BANNER + ems_record(0x50), 0.0)
    t = feed(monitor, SAC_BANNER + ems_record(0x50), t + 5)
    verdict = monitor.decide(t + 10, final=True)
    assert verdict is not None and verdict.verdict == "boot-loop" and verdict.boots == 2
    assert [c.title for c in verdict.crashes] == ["PAGE_FAULT_IN_NONPAGED_AREA (0x50)"] * 2


def test_the_boot_loop_fixture_through_the_monitor() -> None:
    verdict = triage_text((LOGS / "ems-bootloop-0x50.log").read_text(), family="windows")
    assert verdict.verdict == "boot-loop" and verdict.boots == 2 and verdict.crashing_boots == 2
    assert [c.title for c in verdict.crashes] == ["PAGE_FAULT_IN_NONPAGED_AREA (0x50) in harnessflt.sys"] * 2


def test_a_crash_event_after_a_whole_record_finishes_the_report_at_once() -> None:
    monitor = Monitor(WindowsFamily(), boot_loop_threshold=2)
    t = feed(monitor, SAC_BANNER + ems_record(0x50), 0.0)
    assert monitor.parser.panicked
    monitor.observe_event("lifecycle:crashed:panicked", t)
    assert monitor.boots[-1].report_done and monitor.boots[-1].report is not None


def test_a_healthy_windows_boot() -> None:
    verdict = triage_text((LOGS / "healthy.log").read_text())
    assert verdict.verdict == "healthy" and verdict.crash is None


def test_content_rejected_on_windows() -> None:
    lines = SAC_BANNER + ["EVENT: The CMD command is now available.",
                          "harness_sensor: C-00000291-00000000-00000032.sys: rejected: template instance 2 "
                          "uses input field 21 of 20 [field-count]",
                          "HARNESS-SENSOR-LOADED build=hardened files=1 loaded=0 rejected=1"]
    verdict = triage_text("\n".join(lines))
    assert verdict.verdict == "content-rejected"


def test_every_marker_matches_its_line() -> None:
    assert MARKERS.boot_start.search("Computer is booting, SAC started and initialized.")
    assert MARKERS.boot_complete.search("EVENT: The CMD command is now available.")
    assert MARKERS.sensor_loaded.search("HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0")
    assert MARKERS.sensor_skipped.search("HARNESS-SENSOR-SKIPPED")
    assert MARKERS.file_loaded.search("harness_sensor: C-00000291-00000000-00000032.sys: loaded (3 instances)")
    assert MARKERS.file_rejected.search("harness_sensor: x.sys: rejected: bad [crc]")
    assert MARKERS.ssh_ready.search("HARNESS-SSH-READY")
    assert MARKERS.boot_error.search("HARNESS-BOOT-ERROR no content disk")
    assert MARKERS.crash_end.search("Physical memory dump complete.")
    assert MARKERS.recovery_done.search("HARNESS-RECOVERY-DONE path=winpe rc=0")
    assert MARKERS.script_output.search("recovery: deleted C-00000291-00000000-00000032.sys")
    assert is_crash_start("\x07\x07\x07<?xml>\x07<BP>\r") and not is_crash_start("SAC>")
    assert isinstance(WindowsFamily().crash_parser(), WindowsConsoleParser)


# --- the driver's own word (boot-marker.ps1 / lib.ps1 Get-DriverWordLines) ----------------------

LIB_PS1 = REPO / "vm-templates" / "windows" / "setup" / "lib.ps1"
WORD = {"$($Word.Build)": "hardened", "$files": "2", "$($Word.Loaded.Count)": "1",
        "$($Word.Rejected.Count)": "1", "$($Word.Instances)": "6", "$($Word.Generation)": "1",
        "$($Word.Status)": "loaded", "$Kind": "LOADED"}


def _word_marker_from_lib_ps1() -> str:
    """The marker line lib.ps1 prints from the driver's status key, its variables filled in."""
    template = next(line.strip() for line in LIB_PS1.read_text().splitlines()
                    if '"HARNESS-SENSOR-$Kind' in line)
    text = template.split('"', 1)[1].rsplit('"', 1)[0]
    for variable, value in WORD.items():
        text = text.replace(variable, value)
    assert "$" not in text, text
    return text


def test_the_driver_word_lines_of_lib_ps1_are_what_the_family_parses() -> None:
    marker = _word_marker_from_lib_ps1()
    assert marker.endswith("source=driver")
    assert MARKERS.sensor_loaded.search(marker)
    lib = LIB_PS1.read_text()
    # one line per rejected file, in the Linux sensor's words, from the Rejected multi-string
    assert '"harness_sensor: $($entry.Substring(0, $cut))`: rejected: $($entry.Substring($cut + 2))"' in lib
    assert '"harness_sensor: $name`: loaded (reported by the driver)"' in lib
    assert MARKERS.file_loaded.search("harness_sensor: C-00000291-00000000-00000031.sys: loaded (reported by the "
                                      "driver)")
    assert "Parameters\\State" in lib and "HARNESS-BOOT-ERROR sensor: " in lib


def test_fltmc_listing_the_filter_is_not_a_healthy_sensor() -> None:
    """The old startup task's line said nothing about content: it no longer counts as loaded."""
    assert not MARKERS.sensor_loaded.search("HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=? rejected=? "
                                            "source=fltmc")
    verdict = triage_text("\n".join(SAC_BANNER + ["HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=? "
                                                   "rejected=? source=fltmc", "HARNESS-BOOT-COMPLETE"]))
    assert verdict.verdict != "healthy"


def test_the_driver_word_decides_healthy_and_content_rejected() -> None:
    marker = _word_marker_from_lib_ps1()
    rejected = ["harness_sensor: C-00000291-00000000-00000031.sys: loaded (reported by the driver)",
                "harness_sensor: C-00000291-00000000-00000032.sys: rejected: template declares 21 input fields, "
                "sensor supplies 20 [field-count]", marker, "HARNESS-BOOT-COMPLETE"]
    verdict = triage_text("\n".join(SAC_BANNER + rejected))
    assert verdict.verdict == "content-rejected"
    assert "C-00000291-00000000-00000032.sys (template declares 21 input fields, sensor supplies 20 " \
           "[field-count])" in verdict.reason
    healthy = [rejected[0], marker.replace("loaded=1 rejected=1", "loaded=1 rejected=0"), "HARNESS-BOOT-COMPLETE"]
    assert triage_text("\n".join(SAC_BANNER + healthy)).verdict == "healthy"


# --- family detection and the command line ----------------------------------------------------

def test_family_detection() -> None:
    for log in LOGS.glob("*.log"):
        assert detect_family(log.read_text(errors="replace")) == "windows", log.name
    for log in LINUX_LOGS.glob("*.log"):
        assert detect_family(log.read_bytes().decode(errors="replace")) == "linux", log.name


def triage_json(*args: str | Path) -> dict:
    proc = run_harness("triage", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_json(crash: dict, code: int, params: tuple[int, ...] | list[int]) -> None:
    assert crash["stop_code"] == code and isinstance(crash["stop_code"], int)
    assert crash["stop_code_hex"] == f"0x{code:X}"
    assert crash["stop_name"] == BUGCHECKS[code].name and crash["parameters"] == hex16(params)
    assert crash["kind"] == "bugcheck" and crash["family"] == "windows"


def test_cli_boot_loop_fixture() -> None:
    result = triage_json(LOGS / "ems-bootloop-0x50.log")
    assert result["family"] == "windows" and result["verdict"] == "boot-loop" and result["boots"] == 2
    check_json(result["crash"], 0x50, (0xffff840500000074, 0, 0xfffff80123451a2b, 2))
    assert result["crash"]["title"] == "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in harnessflt.sys"
    assert [c["title"] for c in result["crashes"]] == [result["crash"]["title"]] * 2


def test_cli_every_code_through_the_ems_port_and_the_domain_log(tmp_path: Path) -> None:
    serial = tmp_path / "com1.log"
    serial.write_text("\n".join(line for code in CODES for line in
                                SAC_BANNER + ems_record(code) + stop_text(code, params_for(code))))
    domain = tmp_path / "qemu-win.log"
    domain.write_text("\n".join(hyperv_line(code, params_for(code)) for code in CODES) + "\n")
    for result in (triage_json(serial), triage_json("--domain-log", domain), triage_json(domain)):
        assert len(result["crashes"]) == len(CODES)
        for code, crash in zip(CODES, result["crashes"]):
            check_json(crash, code, params_for(code))


@pytest.mark.parametrize("code", CODES, ids=[f"0x{c:X}" for c in CODES])
def test_cli_every_code_through_the_kernel_debugger(tmp_path: Path, code: int) -> None:
    log = tmp_path / "kd.log"
    log.write_text("\n".join(kd_text(code, params_for(code))))
    result = triage_json(log)
    assert result["verdict"] == "crashed"
    check_json(result["crash"], code, params_for(code))


def test_cli_fuses_the_domain_log_into_the_serial_report() -> None:
    result = triage_json(LOGS / "ems-stop-line-cut-0x50.log", "--domain-log", LOGS / "domain-0x50.log")
    assert result["domain_log"].endswith("domain-0x50.log") and len(result["crashes"]) == 1
    crash = result["crash"]
    check_json(crash, 0x50, (0xffff840500000074, 0, 0xfffff80123451a2b, 2))
    assert crash["module"] == "harnessflt.sys" and not crash["corrupted"]


def test_cli_a_domain_log_alone() -> None:
    result = triage_json("--domain-log", LOGS / "domain-bootloop-0x50.log")
    assert result["log"] is None and result["verdict"] == "boot-loop" and result["boots"] == 2
    check_json(result["crash"], 0x50, (0xffff840500000074, 0, 0xfffff80123451a2b, 2))


def test_cli_flags_a_truncated_record() -> None:
    result = triage_json(LOGS / "ems-truncated-then-healthy.log", "--family", "windows")
    crash = result["crash"]
    assert crash["corrupted"] and crash["title"] == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"
    assert crash["stop_code"] == 0x50 and crash["stop_code_hex"] == "0x50" and crash["parameters"] == []


def test_cli_text_output_names_the_stop_code() -> None:
    proc = run_harness("triage", LOGS / "kd-fatal-0x1000007e.log")
    assert proc.returncode == 0, proc.stderr
    assert "stop:      0x7E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0xffffffffc0000005," in proc.stdout


def test_cli_linux_logs_are_unchanged_but_for_the_new_null_key() -> None:
    result = triage_json(LINUX_LOGS / "cf291-field21-vulnerable.log")
    assert "family" not in result and result["crash"]["stop_code_hex"] is None
    assert result["crash"]["family"] == "linux"


def test_cli_needs_a_log(tmp_path: Path) -> None:
    proc = run_harness("triage")
    assert proc.returncode == 2 and "give a serial log" in proc.stderr
    proc = run_harness("triage", "--family", "linux", "--domain-log", LOGS / "domain-0x50.log")
    assert proc.returncode == 2 and "--family windows" in proc.stderr


def test_triage_files_reads_a_domain_log_given_as_the_serial_log() -> None:
    result = triage_files(LOGS / "domain-0x50.log")
    assert result.family == "windows" and result.log is None and result.verdict.verdict == "crashed"


def test_the_marker_port_passes_the_drivers_own_lines_and_not_the_firmware_screen() -> None:
    """COM2 mirrors the firmware's screen; the sample's `harness_sensor: <file>: rejected:` line
    (no HARNESS- prefix) must still reach the monitor, or a live Windows machine could never be
    judged content-rejected."""
    assert MARKERS.knows("harness_sensor: C-00000291-00000000-00000031.sys: rejected: bad magic [magic]")
    assert MARKERS.knows("HARNESS-SENSOR-LOADED build=hardened files=1 loaded=0 rejected=1 source=driver")
    assert not MARKERS.knows("BdsDxe: loading Boot0001 \"Windows Boot Manager\"")
    assert not MARKERS.knows("Press ESC in 5 seconds to skip startup.nsh")
