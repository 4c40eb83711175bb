"""The monitor's rules on short, hand-written timelines (the real-VM tests prove them live)."""

from __future__ import annotations

from harness.families.linux import LinuxFamily
from harness.monitor.monitor import Monitor

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
