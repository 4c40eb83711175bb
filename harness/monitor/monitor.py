"""The monitor: one state machine over console lines and libvirt events that names
what happened to a machine (syzkaller's monitor loop, across reboots).

It is fed Observations in arrival order and asked `decide(now)` whenever
something arrives or a deadline passes. The same code judges a live VM and a
saved serial log (`harness triage`), so the two cannot disagree.

Rules, for the window since `start_window()`:
  boot-loop         N crashing boots in a row (N = boot_loop_threshold), the
                    last one's crash report complete
  healthy           the current boot completed and the sensor reported
                    itself loaded (or skipped, in safe mode) inside the window
  content-rejected  healthy, and the sensor rejected a content file
  crashed           a crash, then the machine stopped, or booted healthy, or
                    the deadline passed before N crashing boots
  hang              no console output and no event for the hang timeout, or
                    no verdict by the deadline
  infra-error       the domain stopped without a crash, or libvirt went away

What opens a boot: the family's banner (Linux: the kernel's; Windows: SAC's), and
for a family that says so (`ConsoleMarkers.firmware_boot`, `resets_end_boots`:
Windows) also what every boot produces whatever the OS prints: libvirt's REBOOT
and CRASHED/PANICKED events end a boot, and the firmware's boot line (OVMF's
`BdsDxe: loading Boot0001 ...`) or the next crash opens the next one. A crash
that no text described (pvpanic alone) is still a crash, with the family's
report of an untold crash (`untold_crash`); a report the text brings later
replaces it.

Memory does not grow with the console's volume: a line is judged and dropped
(the crash parser keeps bounded reports), and the per-boot lists of loaded and
rejected files keep their first MAX_LISTED entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crash.report import CrashReport
from ..families import Family
from .verdict import BootSummary, Verdict, VerdictName

MAX_LISTED = 256  # loaded / rejected files kept per boot (a guest may print such lines forever)
MAX_FINDINGS = 16  # non-fatal reports kept per boot (each may hold a long report); the rest are counted


@dataclass
class Boot:
    index: int
    started: float
    banner: bool = False
    crashed: bool = False
    crash_t: float | None = None  # when the first sign of the crash arrived
    crashed_event: bool = False
    crash_event: str | None = None  # the name of the first crash event (lifecycle:crashed:...)
    report: CrashReport | None = None
    report_deadline: float | None = None  # finish the crash report by then
    report_done: bool = False
    sensor: str | None = None
    sensor_t: float = -1.0
    complete_t: float = -1.0
    loaded: list[str] = field(default_factory=list)
    rejected: list[tuple[float, str, str]] = field(default_factory=list)
    ssh_ready: bool = False
    error: str | None = None
    recovery_rc: int | None = None  # exit status of a recovery script run in this boot
    findings: list[CrashReport] = field(default_factory=list)  # non-fatal reports (WARNING, leak ...)
    findings_dropped: int = 0  # past MAX_FINDINGS
    opened_by: str = "start"  # what opened this boot: start, banner, firmware, crash
    firmware: bool = False  # the firmware's boot line was seen (families with `firmware_boot`)
    ended: bool = False  # a reset or a crash event ended it: the next boot's signs open another
    untold: bool = False  # `report` is the family's report of a crash no text described

    @property
    def complete(self) -> bool:
        return self.complete_t >= 0

    def summary(self) -> BootSummary:
        return BootSummary(self.index, round(self.started, 3), self.crashed, self.complete, self.sensor,
                           self.report.title if self.report else None,
                           [{"file": n, "reason": r} for _, n, r in self.rejected], list(self.loaded),
                           self.crashed_event, self.error, self.recovery_rc, self.opened_by)


class Monitor:
    def __init__(self, family: Family, boot_loop_threshold: int = 2, grace_s: float = 3.0,
                 event_settle_s: float = 0.3) -> None:
        self.family = family
        self.markers = family.markers
        self.threshold = boot_loop_threshold
        self.grace_s = grace_s
        self.event_settle_s = event_settle_s
        self.parser = family.crash_parser()
        self.boots: list[Boot] = []
        self.lineno = 0
        self.last_activity = 0.0
        self.stopped: str | None = None
        self.closed: str | None = None
        self.expected_stop = False
        self.events: dict[str, int] = {}
        self.window_t = 0.0
        self.window_boot = 1

    # ------------------------------------------------------------------ input

    def start_window(self, t: float, new_boot: bool = False) -> None:
        """Judge only what happens from now on: after an online content update, or (with
        `new_boot`) from a fresh start of the domain, whose boot owes nothing to the last one."""
        if new_boot and self.boots:
            self._collect(self.boots[-1])
            self._finish_report(self.boots[-1])
            self.boots.append(Boot(self.boots[-1].index + 1, t))
        self.window_t = t
        self.window_boot = self.boots[-1].index if self.boots else 1
        self.stopped = None
        self.expected_stop = False

    def current(self, t: float) -> Boot:
        if not self.boots:
            self.boots.append(Boot(1, t))
        return self.boots[-1]

    def observe_line(self, line: str, t: float) -> None:
        self.last_activity = max(self.last_activity, t)
        self.lineno += 1
        m = self.markers
        if m.script_output.search(line):
            return  # a recovery script's own words are never markers nor crash text
        boot = self.current(t)
        crash_start = self.parser.is_crash_start(line)
        self.parser.feed_line(line, self.lineno)  # a banner ends the previous boot's report
        if m.boot_start.search(line):
            # A banner after a crash is the next boot, even when this boot's own banner was
            # never seen (a serial log that begins mid-boot: rotated by virtlogd, or cut).
            if boot.banner or boot.crashed or boot.ended:
                boot = self._next_boot(boot, t, "banner")
            boot.banner = True
        elif m.firmware_boot is not None and m.firmware_boot.search(line):
            # The firmware speaks first at every reset, several lines per boot: a firmware line
            # opens the next boot once this one went past the firmware or was ended.
            if boot.ended or boot.banner or boot.crashed or boot.complete or boot.sensor:
                boot = self._next_boot(boot, t, "firmware")
            boot.firmware = True
        elif crash_start and boot.ended and boot.report_done:
            boot = self._next_boot(boot, t, "crash")  # a silent firmware, and the next boot crashed
        if crash_start and not boot.crashed:
            boot.crashed = True
            boot.crash_t = t
            boot.report_deadline = t + self.grace_s
        self._collect(boot)
        if boot.crashed and m.crash_end.search(line):
            self._finish_report(boot)
        if (hit := m.sensor_loaded.search(line)) or m.sensor_skipped.search(line):
            boot.sensor = "loaded" if hit else "skipped"
            boot.sensor_t = t
        elif hit := m.file_loaded.search(line):
            if len(boot.loaded) < MAX_LISTED:
                boot.loaded.append(hit["name"])
        elif hit := m.file_rejected.search(line):
            if len(boot.rejected) < MAX_LISTED:
                boot.rejected.append((t, hit["name"], hit["reason"].strip()))
        elif m.boot_complete.search(line):
            boot.complete_t = t
        elif m.ssh_ready.search(line):
            boot.ssh_ready = True
        elif hit := m.recovery_done.search(line):
            boot.recovery_rc = int(hit["rc"])
        elif hit := m.boot_error.search(line):
            boot.error = hit["reason"].strip()

    def observe_event(self, name: str, t: float) -> None:
        self.last_activity = max(self.last_activity, t)
        self.events[name] = self.events.get(name, 0) + 1
        boot = self.current(t)
        resets = self.markers.resets_end_boots
        if name.startswith("lifecycle:crashed"):
            if resets and boot.ended:  # no sign of the next boot came first: a silent firmware
                boot = self._next_boot(boot, t, "crash")
            if boot.crash_t is None:
                boot.crash_t = t
            boot.crashed = boot.crashed_event = True
            boot.crash_event = boot.crash_event or name
            # A panicked guest is paused and restarted by libvirt (on_crash); after a
            # crash-loaded event it goes on (writing its dump) and resets itself: REBOOT.
            if resets and name.startswith("lifecycle:crashed:panicked"):
                boot.ended = True
            if self.parser.panicked:  # the report is whole: pvpanic stopped the guest at its panic
                self._finish_report(boot)
            else:  # the console may still be delivering the panic's last lines
                settle = t + self.event_settle_s
                boot.report_deadline = min(boot.report_deadline or settle, settle)
        elif name.startswith("lifecycle:stopped"):
            self.stopped = name
        elif name == "reboot" and resets:
            boot.ended = True  # a guest reset (or libvirt's restart after a crash): this boot is over

    def observe_closed(self, why: str, t: float) -> None:
        self.closed = why
        self.last_activity = max(self.last_activity, t)

    # --------------------------------------------------------------- reports

    def _next_boot(self, boot: Boot, t: float, opened_by: str) -> Boot:
        """Close `boot` (its crash report finished) and open the next one."""
        self._collect(boot)
        self._finish_report(boot)
        following = Boot(boot.index + 1, t, opened_by=opened_by)
        self.boots.append(following)
        return following

    def _collect(self, boot: Boot) -> None:
        for finding in self.parser.findings():  # a WARNING, a leak ...: the machine runs on
            self._keep_finding(boot, finding)
        for report in self.parser.reports():
            if boot.report is None or boot.untold:  # the text's report replaces an untold one
                boot.report = report
                boot.untold = False
                boot.crashed = True
                boot.report_done = True

    @staticmethod
    def _keep_finding(boot: Boot, finding: CrashReport) -> None:
        if len(boot.findings) < MAX_FINDINGS:
            boot.findings.append(finding)
        else:
            boot.findings_dropped += 1

    def _finish_report(self, boot: Boot) -> None:
        if boot.crashed and not boot.report_done:
            for report in self.parser.flush():
                if boot.report is None:
                    boot.report = report
            for finding in self.parser.findings():
                self._keep_finding(boot, finding)
            untold = self.markers.untold_crash
            if boot.report is None and boot.crashed_event and untold is not None:
                boot.report = untold(boot.crash_event or "lifecycle:crashed", self.lineno)
                boot.untold = True
            boot.report_done = True

    def poll(self, now: float) -> None:
        """Finish crash reports whose grace window has passed."""
        if self.boots:
            boot = self.boots[-1]
            if boot.crashed and not boot.report_done and boot.report_deadline is not None \
                    and now >= boot.report_deadline:
                self._finish_report(boot)

    # --------------------------------------------------------------- verdict

    def quiet_since(self) -> float:
        """Since when nothing has been heard that counts for the hang timeout."""
        return max(self.last_activity, self.window_t)

    def first_crash_t(self) -> float | None:
        """When this machine first crashed, over its whole life (not only the window)."""
        times = [b.crash_t for b in self.boots if b.crash_t is not None]
        return min(times) if times else None

    def window(self) -> list[Boot]:
        return [b for b in self.boots if b.index >= self.window_boot]

    def decide(self, now: float, hang_timeout: float | None = None, deadline: float | None = None,
               final: bool = False) -> Verdict | None:
        """The verdict if one is reached at `now`, else None (always one when `final`)."""
        self.poll(now)
        if final and self.boots:
            self._finish_report(self.boots[-1])
        boots = self.window()
        crashed = [b for b in boots if b.crashed]
        streak = 0
        for b in reversed(boots):
            if not b.crashed:
                break
            streak += 1
        last = boots[-1] if boots else None

        if last and streak >= self.threshold and last.report_done:
            return self._verdict("boot-loop", f"{streak} crashing boots in a row", now)
        if last and last.complete and last.sensor and max(last.sensor_t, last.complete_t) >= self.window_t \
                and not last.crashed:
            if crashed:
                return self._verdict("crashed", f"crashed at boot {crashed[0].index}, then booted "
                                     f"healthy at boot {last.index}", now)
            rejected = [r for r in last.rejected if r[0] >= self.window_t]
            if rejected:
                return self._verdict("content-rejected", "the sensor rejected "
                                     + ", ".join(f"{n} ({r})" for _, n, r in rejected), now)
            what = "skipped (safe mode)" if last.sensor == "skipped" else "loaded"
            return self._verdict("healthy", f"boot complete, sensor {what}", now)
        if last and last.crashed and last.report_done and last.crash_t is not None \
                and last.complete_t > last.crash_t and not (last.report and last.report.panic):
            # A fatal report without a panic (a soft lockup, `scheduling while atomic`, an Oops
            # without oops=panic), and the boot went on to completion: no reboot will come.
            title = last.report.title if last.report else "a crash"
            return self._verdict("crashed", f"{title} at boot {last.index}, and the machine ran on to boot "
                                 "complete without a panic", now)
        if self.closed:
            return self._verdict("infra-error", f"lost libvirt: {self.closed}", now)
        if self.stopped and not self.expected_stop:
            if crashed and (last is None or last.report_done or final):
                return self._verdict("crashed", f"crashed, then the domain stopped ({self.stopped})", now)
            if not crashed:
                return self._verdict("infra-error", f"the domain stopped without a crash ({self.stopped}): "
                                     "QEMU or libvirt failed", now)
        if hang_timeout is not None and now - self.quiet_since() >= hang_timeout:
            return self._verdict("hang", f"no console output and no event for {hang_timeout:.0f} s", now)
        if final or (deadline is not None and now >= deadline):
            if crashed:
                self._finish_report(crashed[-1])
                return self._verdict("crashed", f"{len(crashed)} crashing boot(s), fewer than the "
                                     f"{self.threshold} of a boot loop, by the deadline", now)
            stuck = f"; the guest said {last.error}" if last and last.error else ""
            resets = sum(1 for b in boots if b.ended)
            if resets:
                stuck += f"; {resets} of {len(boots)} boot(s) reset before completing, with no crash seen"
            return self._verdict("hang", "no boot-complete marker by the deadline" + stuck, now)
        return None

    def decide_recovery_env(self, now: float, hang_timeout: float, deadline: float) -> tuple[str, str] | None:
        """For a boot of the recovery environment, which runs a script and powers off:
        ("done", why), ("hang", why), ("crashed", why) or ("failed", why); None while running."""
        self.poll(now)
        boot = self.boots[-1] if self.boots else None
        if boot is not None and boot.crashed:
            return "crashed", f"the recovery environment crashed: {boot.report.title if boot.report else 'panic'}"
        if self.closed:
            return "failed", f"lost libvirt: {self.closed}"
        if self.stopped:
            if boot is not None and boot.recovery_rc is not None:
                return "done", f"script exited {boot.recovery_rc}, then the machine powered off"
            error = f" ({boot.error})" if boot is not None and boot.error else ""
            return "failed", f"the recovery environment stopped without running the script{error}"
        if now - self.quiet_since() >= hang_timeout:
            return "hang", f"no console output and no event for {hang_timeout:.0f} s"
        if now >= deadline:
            return "hang", "the recovery environment did not power off by the deadline"
        return None

    def _verdict(self, name: VerdictName, reason: str, now: float) -> Verdict:
        if self.boots:  # a WARNING seen whole is a finding now, whatever may follow it
            self.parser.settle()
            self._collect(self.boots[-1])
        boots = self.window()
        reports = [b.report for b in boots if b.report is not None]
        return Verdict(verdict=name, reason=reason, boots=len(boots),
                       crashing_boots=sum(1 for b in boots if b.crashed), elapsed_s=now - self.window_t,
                       crash=reports[0] if reports else None, crashes=reports,
                       findings=[f for b in boots for f in b.findings],
                       boot_log=[b.summary() for b in boots], events=dict(self.events))
