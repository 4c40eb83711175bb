"""The monitor's rules on short, hand-written timelines (the real-VM tests prove them live)."""

from __future__ import annotations

import re
import tracemalloc

from harness.families.linux import LinuxFamily
from harness.monitor.monitor import Monitor
from harness.vm.console import CONTINUED, MAX_LINE, ConsoleBuffer, LineSplitter, stream_stall_note

BANNER = "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)"
HEALTHY = [BANNER, "HARNESS-BOOT-START mode=normal sensor=vulnerable",
           "HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0",
           "HARNESS-BOOT-COMPLETE mode=normal sensor=vulnerable"]
OOPS = ["BUG: unable to handle page fault for address: ffffc9000004e000",
        "Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "RIP: 0010:chf_match_criterion+0xe/0x80 [harness_sensor]",
        "Kernel panic - not syncing: Fatal exception"]


def feed(monitor: Monitor, lines: list[str], t: float) -> float:
    for line in lines:
        t += 0.01
        monitor.observe_line(line, t)
    return t


def test_a_domain_that_stops_without_a_crash_is_an_infrastructure_error() -> None:
    monitor = Monitor(LinuxFamily())
    t = feed(monitor, HEALTHY[:2], 0.0)
    monitor.observe_event("lifecycle:stopped:failed", t + 1)
    verdict = monitor.decide(t + 1, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "infra-error" and "stopped:failed" in verdict.reason


def test_losing_libvirt_is_an_infrastructure_error_never_a_crash() -> None:
    monitor = Monitor(LinuxFamily())
    feed(monitor, HEALTHY[:2], 0.0)
    monitor.observe_closed("connection closed (reason 0)", 2.0)
    verdict = monitor.decide(2.0, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "infra-error" and verdict.crash is None


def test_silence_for_the_hang_timeout_is_a_hang() -> None:
    monitor = Monitor(LinuxFamily())
    t = feed(monitor, HEALTHY[:2], 0.0)
    assert monitor.decide(t + 9.9, hang_timeout=10) is None
    verdict = monitor.decide(t + 10.0, hang_timeout=10)
    assert verdict is not None and verdict.verdict == "hang"


def test_one_crash_is_not_a_loop_until_the_next_boot_crashes_too() -> None:
    monitor = Monitor(LinuxFamily(), boot_loop_threshold=2)
    t = feed(monitor, HEALTHY[:3] + OOPS, 0.0)
    monitor.observe_event("lifecycle:crashed:panicked", t)
    assert monitor.decide(t + 1, hang_timeout=30) is None  # one crashing boot so far
    t = feed(monitor, HEALTHY[:3] + OOPS, t + 1)
    monitor.observe_event("lifecycle:crashed:panicked", t)
    verdict = monitor.decide(t + 0.5, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "boot-loop" and verdict.boots == 2
    assert verdict.crash is not None and verdict.crash.function == "chf_match_criterion"


def test_after_an_online_update_only_what_follows_is_judged() -> None:
    monitor = Monitor(LinuxFamily())
    t = feed(monitor, HEALTHY, 0.0)
    assert monitor.decide(t, hang_timeout=30).verdict == "healthy"  # type: ignore[union-attr]
    monitor.start_window(t + 1)
    assert monitor.decide(t + 2, hang_timeout=30) is None  # the earlier boot-complete no longer counts
    t = feed(monitor, ["harness_sensor: C-00000291-00000000-00000032.sys: rejected: bad magic [bad-magic]",
                       "HARNESS-SENSOR-RELOADED build=hardened files=2 loaded=1 rejected=1"], t + 2)
    verdict = monitor.decide(t, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "content-rejected"


# --- what the console reader hands the monitor when a guest floods it -------------------

def monitor_behind_a_splitter() -> tuple[Monitor, LineSplitter, list[float]]:
    monitor = Monitor(LinuxFamily())
    clock = [0.0]

    def on_line(line: str) -> None:
        clock[0] += 0.001
        monitor.observe_line(line, clock[0])

    return monitor, LineSplitter(on_line), clock


def test_a_crash_glued_to_the_end_of_an_unterminated_flood_reaches_the_monitor_whole() -> None:
    """The kernel does not know the tty's column: its first oops line lands on the end of
    whatever user space left without a newline, here 100 KB of it."""
    monitor, splitter, clock = monitor_behind_a_splitter()
    splitter.feed("\n".join(HEALTHY).encode() + b"\n")
    splitter.feed(b"QUJD" * 25_000)
    oops = ["[   41.000001] " + line for line in OOPS]
    splitter.feed(("\r\n".join(oops) + "\r\n").encode())
    monitor.observe_event("lifecycle:crashed:panicked", clock[0])
    verdict = monitor.decide(clock[0] + 0.5, hang_timeout=30, final=True)
    assert verdict is not None and verdict.verdict == "crashed", verdict
    assert verdict.crash is not None
    assert verdict.crash.title == "BUG: unable to handle page fault in chf_match_criterion"


def test_a_crash_head_where_the_harness_cut_an_overlong_line_is_no_crash() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append)
    filler = "x" * (MAX_LINE - len(CONTINUED))  # the first piece ends here, the next begins with "BUG: "
    splitter.feed((filler + "BUG: unable to handle page fault for address: 0" + "y" * 9000 + "\n").encode())
    assert all(len(line) <= MAX_LINE for line in lines)
    assert lines[0] == filler and all(line.startswith(CONTINUED) for line in lines[1:])
    monitor = Monitor(LinuxFamily())
    feed(monitor, HEALTHY + lines, 0.0)
    assert not monitor.boots[-1].crashed


def test_the_monitor_holds_no_more_memory_after_megabytes_of_console_lines() -> None:
    """Short lines, a 70 KB line, and WARNING lines that never end, over and over: what the
    monitor and its parser keep (open report, unread warnings) reaches its bound and stays."""
    monitor, splitter, _clock = monitor_behind_a_splitter()
    splitter.feed("\n".join(HEALTHY).encode() + b"\n")
    chunk = (b"A" * 75 + b"\n") * 500 + b"B" * 70_000 + b"\n" + b"WARNING: CPU: 0 PID: 1 at f.c:1 w+0x1/0x2\n"
    tracemalloc.start()
    try:
        for _ in range(80):  # fill the bounded parts (16 unread warnings of 512 KiB at most)
            splitter.feed(chunk)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):  # 4.4 MB more
            splitter.feed(chunk)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"the monitor grew by {grown} bytes over 4.4 MB of console"
    assert not monitor.boots[-1].crashed


def test_the_console_buffer_keeps_a_bounded_tail_with_absolute_offsets() -> None:
    buffer = ConsoleBuffer(keep_bytes=10_000)
    for number in range(20_000):
        buffer.append(f"line {number}\n")
    assert buffer.end == sum(len(f"line {n}\n") for n in range(20_000))
    assert 10_000 <= len(buffer.text) <= 10_000 + 4096 and buffer.text.endswith("line 19999\n")
    match = buffer.search(re.compile(r"line 1999\d"), buffer.start, timeout=0)
    assert match is not None and buffer.text[match.start():match.end()] == match.group()
    assert buffer.search(re.compile(r"line 5\n"), buffer.start, timeout=0) is None  # dropped long ago
    assert buffer.tail(11) == "line 19999\n"


def test_a_log_that_begins_mid_boot_still_counts_the_boots_after_its_first_crash() -> None:
    """virtlogd rotated the start of the boot away: the saved serial.log begins in a flood."""
    monitor = Monitor(LinuxFamily(), boot_loop_threshold=2)
    t = feed(monitor, ["QUJDRA" * 12] * 3 + OOPS + ["Rebooting in 1 seconds.."], 0.0)
    t = feed(monitor, HEALTHY[:2] + OOPS + ["Rebooting in 1 seconds.."], t)
    verdict = monitor.decide(t, hang_timeout=30, final=True)
    assert verdict is not None and verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.crashing_boots == 2


# --- Windows: boots counted from what every boot produces, whatever the OS prints ----------

# What OVMF prints on COM1 at every reset (the stand-in's com1.log; a real disk says
# "Windows Boot Manager"), and the EMS BLUESCREEN record a bugcheck writes with EMS on.
FIRMWARE = ['\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001 "Windows Boot Manager" from HD(1,GPT,0C1F8D2A-1)/'
            '\\EFI\\Microsoft\\Boot\\bootmgfw.efi',
            'BdsDxe: starting Boot0001 "Windows Boot Manager" from HD(1,GPT,0C1F8D2A-1)/'
            '\\EFI\\Microsoft\\Boot\\bootmgfw.efi']
EMS_0X50 = ['<INSTANCE CLASSNAME="BLUESCREEN">',
            '<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x50"</VALUE></PROPERTY>',
            "</INSTANCE>"]
SAC = ["Computer is booting, SAC started and initialized.", "SAC>"]
WIN_HEALTHY = ["HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0 source=driver",
               "HARNESS-BOOT-COMPLETE"]
PANICKED = "lifecycle:crashed:panicked"


def windows_monitor(threshold: int = 2) -> Monitor:
    from harness.families.windows import WindowsFamily

    monitor = Monitor(WindowsFamily(), boot_loop_threshold=threshold, event_settle_s=0.3)
    monitor.observe_event("lifecycle:resumed:unpaused", 0.0)
    return monitor


def crash_and_restart(monitor: Monitor, t: float) -> float:
    """libvirt at a pvpanic write with on_crash=restart: CRASHED, then REBOOT (the events.jsonl
    of a real stand-in run)."""
    monitor.observe_event(PANICKED, t)
    monitor.observe_event("reboot", t + 0.01)
    return t + 0.02


def test_a_windows_bugcheck_before_sac_at_every_boot_is_a_boot_loop_with_the_stop_code() -> None:
    monitor = windows_monitor()
    t = feed(monitor, FIRMWARE + EMS_0X50, 0.0)
    t = crash_and_restart(monitor, t)
    assert monitor.decide(t, hang_timeout=60) is None  # one crashing boot so far
    t = feed(monitor, FIRMWARE + EMS_0X50, t + 1)
    monitor.observe_event(PANICKED, t)
    verdict = monitor.decide(t, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "boot-loop", verdict
    assert verdict.boots == verdict.crashing_boots == 2
    assert [c.title for c in verdict.crashes] == ["PAGE_FAULT_IN_NONPAGED_AREA (0x50)"] * 2
    assert verdict.crash is not None and verdict.crash.stop_code == 0x50
    assert [b.opened_by for b in verdict.boot_log] == ["start", "firmware"]


def test_a_windows_crash_with_only_the_pvpanic_write_is_a_crash_whose_bugcheck_is_unknown() -> None:
    monitor = windows_monitor()
    t = feed(monitor, FIRMWARE, 0.0)
    t = crash_and_restart(monitor, t)
    t = feed(monitor, FIRMWARE, t + 1)
    monitor.observe_event(PANICKED, t)
    assert monitor.decide(t + 0.1, hang_timeout=60) is None  # the console may still bring the text
    verdict = monitor.decide(t + 0.3, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "boot-loop", verdict
    assert verdict.boots == verdict.crashing_boots == 2
    assert [c.title for c in verdict.crashes] == ["BUGCHECK: unknown (pvpanic only)"] * 2
    assert verdict.crash is not None and verdict.crash.stop_code is None and verdict.crash.family == "windows"
    assert "lifecycle:crashed:panicked" in verdict.crash.text


def test_a_windows_bugcheck_told_only_by_the_domain_logs_hyper_v_line_has_its_stop_code_and_parameters() -> None:
    """KVM with the Hyper-V crash MSRs, no EMS: at the CRASHED event Machine feeds the domain
    log's `panic hyper-v` line (WindowsBackend.crash_lines) before the event itself."""
    hyperv = ("2026-12-03 07:00:00.000+0000: panic hyper-v: arg1='0x50', arg2='0xffff9c8e0000008a', "
              "arg3='0x0', arg4='0xfffff8012345678a', arg5='0x2'")
    monitor = windows_monitor()
    t = 0.0
    for _ in range(2):
        t = feed(monitor, FIRMWARE, t + 1)
        monitor.observe_line(hyperv, t + 1)
        t = crash_and_restart(monitor, t + 1)
    verdict = monitor.decide(t, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "boot-loop" and verdict.boots == 2, verdict
    assert verdict.crash is not None and verdict.crash.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"
    assert verdict.crash.parameters[0] == "0xffff9c8e0000008a" and verdict.crash.address == "0xffff9c8e0000008a"


def test_a_windows_bugcheck_that_resets_the_machine_itself_is_counted_from_the_reboot_events() -> None:
    """AutoReboot without a crash device (no pvpanic driver, no Hyper-V crash MSRs under TCG):
    the EMS record, then a guest reset; no CRASHED event at all."""
    monitor = windows_monitor()
    t = feed(monitor, FIRMWARE + EMS_0X50, 0.0)
    monitor.observe_event("reboot", t + 2)
    t = feed(monitor, FIRMWARE + EMS_0X50, t + 3)
    assert monitor.decide(t, hang_timeout=60) is None  # the report's grace window runs
    verdict = monitor.decide(t + 3.0, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "boot-loop" and verdict.boots == 2, verdict
    assert verdict.crash is not None and verdict.crash.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"
    assert verdict.events == {"lifecycle:resumed:unpaused": 1, "reboot": 1}


def test_sac_and_the_firmware_in_one_windows_boot_are_one_boot() -> None:
    monitor = windows_monitor(threshold=3)
    t = 0.0
    for _ in range(2):
        t = feed(monitor, FIRMWARE + SAC + EMS_0X50, t + 1)
        t = crash_and_restart(monitor, t)
    t = feed(monitor, FIRMWARE + SAC + ["EVENT: The CMD command is now available."] + WIN_HEALTHY, t + 1)
    verdict = monitor.decide(t, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "crashed", verdict  # then booted healthy
    assert verdict.boots == 3 and verdict.crashing_boots == 2
    assert "crashed at boot 1, then booted healthy at boot 3" in verdict.reason


def test_a_healthy_windows_boot_needs_no_sac() -> None:
    monitor = windows_monitor()
    t = feed(monitor, ['BdsDxe: failed to load Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0): '
                       "Not Found"] + FIRMWARE + ["Shell> echo -off"] + WIN_HEALTHY, 0.0)
    verdict = monitor.decide(t, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "healthy" and verdict.boots == 1, verdict


def test_a_windows_hang_before_any_output_of_the_os_is_a_hang_of_one_boot() -> None:
    monitor = windows_monitor()
    t = feed(monitor, FIRMWARE, 0.0)
    assert monitor.decide(t + 29, hang_timeout=30) is None
    verdict = monitor.decide(t + 30, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "hang" and verdict.boots == 1 and verdict.crash is None


def test_windows_resets_without_any_crash_are_boots_but_no_crash() -> None:
    monitor = windows_monitor()
    t = 0.0
    for _ in range(3):
        t = feed(monitor, FIRMWARE, t + 1)
        monitor.observe_event("reboot", t + 1)
        t += 1
    verdict = monitor.decide(t + 1, hang_timeout=60, deadline=t + 1)
    assert verdict is not None and verdict.verdict == "hang" and verdict.crashing_boots == 0, verdict
    assert verdict.boots == 3 and "3 of 3 boot(s) reset before completing, with no crash seen" in verdict.reason


def test_windows_crash_events_with_a_silent_firmware_are_still_one_boot_each() -> None:
    monitor = windows_monitor()
    t = crash_and_restart(monitor, 5.0)
    t = crash_and_restart(monitor, t + 5)
    verdict = monitor.decide(t + 0.5, hang_timeout=60)
    assert verdict is not None and verdict.verdict == "boot-loop" and verdict.boots == 2, verdict
    assert [b.opened_by for b in verdict.boot_log] == ["start", "crash"]


def test_an_untold_windows_crash_takes_the_text_that_comes_after_the_crash_loaded_event() -> None:
    """pvpanic's crash-loaded event does not stop the guest: it goes on writing its dump, and
    text about the bugcheck may follow. It replaces the untold report."""
    monitor = windows_monitor()
    t = feed(monitor, FIRMWARE, 0.0)
    monitor.observe_event("lifecycle:crashed:crashloaded", t)
    monitor.poll(t + 1)
    assert monitor.boots[-1].report is not None and monitor.boots[-1].untold
    t = feed(monitor, EMS_0X50, t + 2)
    monitor.observe_event("reboot", t + 5)
    feed(monitor, FIRMWARE, t + 6)
    first = monitor.boots[0]
    assert len(monitor.boots) == 2 and first.report is not None and not first.untold
    assert first.report.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"


def test_linux_boots_are_still_counted_from_the_kernel_banner_only() -> None:
    """REBOOT events and firmware-like lines change nothing for the Linux family."""
    monitor = Monitor(LinuxFamily(), boot_loop_threshold=3)
    t = feed(monitor, HEALTHY[:3] + OOPS, 0.0)
    monitor.observe_event(PANICKED, t)
    monitor.observe_event("reboot", t + 0.01)
    t = feed(monitor, FIRMWARE + ["SeaBIOS (version 1.16.2-debian-1.16.2-1)"], t + 1)
    monitor.observe_event("reboot", t + 1)
    assert len(monitor.boots) == 1
    t = feed(monitor, HEALTHY[:3] + OOPS, t + 2)
    monitor.observe_event(PANICKED, t)
    verdict = monitor.decide(t + 0.5, hang_timeout=30)
    assert verdict is None and len(monitor.boots) == 2  # two crashing boots of three
    assert all(b.opened_by in ("start", "banner") for b in monitor.boots)


WARNING_IN_SENSOR = [
    "------------[ cut here ]------------",
    "WARNING: CPU: 0 PID: 88 at drivers/linux/harness_sensor.c:120 chf_load_file+0x5c/0x90 [harness_sensor]",
    "Modules linked in: harness_sensor(OE+)",
    "RIP: 0010:chf_load_file+0x5c/0x90 [harness_sensor]",
    "Call Trace:",
    " <TASK>",
    " chf_load_dir+0x40/0x90 [harness_sensor]",
    " do_one_initcall+0x59/0x220",
    " </TASK>",
    "---[ end trace 0000000000000000 ]---",
]


def test_a_warning_on_a_machine_that_keeps_running_is_a_finding_not_a_crash() -> None:
    """Non-fatal reports ride along with the verdict: healthy stays healthy, the WARNING is
    listed as a finding, titled after the driver's function."""
    monitor = Monitor(LinuxFamily())
    t = feed(monitor, HEALTHY[:2] + WARNING_IN_SENSOR + HEALTHY[2:], 0.0)
    verdict = monitor.decide(t + 0.5, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "healthy" and verdict.crash is None
    [finding] = verdict.findings
    assert finding.title == "WARNING in chf_load_file" and finding.module == "harness_sensor"
    assert not finding.fatal
    assert verdict.to_json()["findings"][0]["title"] == "WARNING in chf_load_file"


def test_a_finding_seen_whole_is_told_when_the_monitor_judges_even_with_nothing_after_it() -> None:
    """The WARNING's end was the last line: judging settles it (a panic could still have joined
    it, and nothing came)."""
    monitor = Monitor(LinuxFamily())
    t = feed(monitor, HEALTHY + WARNING_IN_SENSOR, 0.0)
    verdict = monitor.decide(t + 0.5, hang_timeout=30)
    assert verdict is not None and verdict.verdict == "healthy"
    assert [f.title for f in verdict.findings] == ["WARNING in chf_load_file"]


def test_a_fatal_report_the_machine_runs_on_after_is_crashed_at_once_not_a_hang() -> None:
    """Captured on our own guest: `BUG: scheduling while atomic` in a module's init, no panic,
    and the boot completes. No reboot will come: the verdict is `crashed` as soon as the
    report is whole, not a hang after the hang timeout."""
    from pathlib import Path

    from harness.driver import DriverSpec

    log = Path(__file__).resolve().parent.parent / "fixtures" / "logs" / "linux" / "captured-atomic.log"
    monitor = Monitor(LinuxFamily(driver=DriverSpec(content_dir="/var/lib/crashtest",
                                                    ready=r"crashtest: (done|loaded)", module="/x/crashtest.ko")))
    t = feed(monitor, log.read_text(errors="replace").splitlines(), 0.0)
    verdict = monitor.decide(t + 3.5, hang_timeout=45)  # the grace window has passed; far from the hang timeout
    assert verdict is not None and verdict.verdict == "crashed", verdict
    assert "ran on to boot complete without a panic" in verdict.reason
    assert verdict.crash is not None and verdict.crash.title.startswith("BUG: scheduling while atomic")


def test_a_console_timeout_says_when_the_serial_log_has_the_line_the_stream_lacked(tmp_path) -> None:
    """A loaded libvirtd can stall the console stream while virtlogd keeps the log: say which."""
    log = tmp_path / "serial.log"
    log.write_bytes(b"[   24.1\r\n[   24.116294] HARNESS-SENSOR-RELOADED build=vulnerable files=2\r\n")
    reloaded = re.compile(r"HARNESS-SENSOR-RELOADED build=vulnerable files=2")
    assert stream_stall_note(log, reloaded) == (
        f" (the serial log {log} has it: the console stream from libvirtd stalled)")
    assert stream_stall_note(log, re.compile("HARNESS-BOOT-COMPLETE")) == ""
    assert stream_stall_note(tmp_path / "missing.log", reloaded) == ""
