"""Every report kind a Linux kernel prints since 4.x, written from the documented formats.

The cases are short reports written here in the shape the kernel prints them
(x86-64 unless said; 4.x kernels' `IP:`/`[<pc>]` frames and 6.x `RIP:`/`<TASK>`),
not copied from any log.  Each checks the kind, the title in syzkaller's
wording, the guilty function (frames that are never the bug skipped), whether
the report is fatal (a crash) or a finding, and that `is_crash_start` agrees.
"""

from __future__ import annotations

import pytest

from harness.crash.linux import (NO_FRAMES, SKIP_GROUPS, LinuxConsoleParser, is_crash_start, parse_all,
                                 parse_reports)
from harness.families.linux import LinuxFamily
from harness.monitor.monitor import Monitor
from harness.monitor.verdict import Verdict


def _log(*lines: str) -> str:
    return "\n".join(f"[   42.{i:06d}] {line}" for i, line in enumerate(lines))


TRACE_TAIL = (" do_syscall_64+0x3b/0x90", " entry_SYSCALL_64_after_hwframe+0x63/0xcd", " </TASK>")

CASES: dict[str, tuple[str, str, str, str | None, bool]] = {
    # name: (log, kind, title, function, fatal)
    "page fault, 6.x": (_log(
        "BUG: unable to handle page fault for address: ffffc90000abc000",
        "#PF: supervisor read access in kernel mode", "Oops: 0000 [#1] PREEMPT SMP NOPTI",
        "RIP: 0010:memcpy_orig+0x10/0x120", "Call Trace:", " <TASK>", " ? __die+0x20/0x60",
        " parse_blob+0x44/0x90 [acme]", " acme_ioctl+0x80/0x100 [acme]", *TRACE_TAIL,
        "---[ end trace 0000000000000000 ]---"),
        "page-fault", "BUG: unable to handle page fault in parse_blob", "parse_blob", True),
    "paging request, 4.x IP line": (_log(
        "BUG: unable to handle kernel paging request at ffff88003ab12000",
        "IP: [<ffffffff8139a2b4>] acme_copy+0x14/0x50 [acme]", "PGD 1c06067 PUD 0",
        "Oops: 0002 [#1] SMP", "RIP: 0010:[<ffffffff8139a2b4>]  [<ffffffff8139a2b4>] acme_copy+0x14/0x50 [acme]",
        "Call Trace:", " [<ffffffff8139a400>] acme_write+0x30/0x60 [acme]",
        " [<ffffffff811f0a1d>] vfs_write+0xad/0x1a0", " [<ffffffff811f1865>] SyS_write+0x55/0xc0",
        "---[ end trace 4ab2f0aa1c2d7e11 ]---"),
        "page-fault", "BUG: unable to handle page fault in acme_copy", "acme_copy", True),
    "NULL pointer, old wording": (_log(
        "BUG: unable to handle kernel NULL pointer dereference at 0000000000000010",
        "IP: acme_probe+0x1c/0x80", "Oops: 0000 [#1] SMP KASAN", "RIP: 0010:acme_probe+0x1c/0x80",
        "Call Trace:", " really_probe+0x100/0x300", " driver_probe_device+0x40/0x100",
        "---[ end trace 1111111111111111 ]---"),
        "null-deref", "BUG: unable to handle kernel NULL pointer dereference in acme_probe", "acme_probe", True),
    "NULL pointer, 5.x wording": (_log(
        "BUG: kernel NULL pointer dereference, address: 0000000000000008",
        "Oops: 0000 [#1] SMP PTI", "RIP: 0010:acme_read+0x9/0x30", "Call Trace:", " <TASK>",
        " vfs_read+0x90/0x150", *TRACE_TAIL, "---[ end trace 0000000000000000 ]---"),
        "null-deref", "BUG: unable to handle kernel NULL pointer dereference in acme_read", "acme_read", True),
    "general protection fault, 6.10 Oops prefix": (_log(
        "Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1]",
        "RIP: 0010:acme_walk+0x22/0x70", "Call Trace:", " <TASK>", " acme_scan+0x10/0x20", *TRACE_TAIL,
        "---[ end trace 0000000000000000 ]---"),
        "general-protection", "general protection fault in acme_walk", "acme_walk", True),
    "kernel BUG at": (_log(
        "------------[ cut here ]------------", "kernel BUG at drivers/acme/core.c:120!",
        "invalid opcode: 0000 [#1] PREEMPT SMP", "RIP: 0010:acme_check+0x5/0x10", "Call Trace:", " <TASK>",
        " acme_init+0x20/0x40", *TRACE_TAIL, "---[ end trace 0000000000000000 ]---"),
        "bug", "kernel BUG in acme_check", "acme_check", True),
    "divide error": (_log(
        "divide error: 0000 [#1] PREEMPT SMP KASAN", "CPU: 1 PID: 4242 Comm: acmed Not tainted 5.15.0 #1",
        "RIP: 0010:acme_rate+0x31/0x60", "Call Trace:", " <TASK>", " acme_tick+0x10/0x20", *TRACE_TAIL,
        "---[ end trace 0000000000000000 ]---"),
        "divide-error", "divide error in acme_rate", "acme_rate", True),
    "KASAN use-after-free": (_log(
        "==================================================================",
        "BUG: KASAN: use-after-free in acme_free_list+0x44/0x80",
        "Read of size 8 at addr ffff888012345678 by task acmed/99", "", "Call Trace:", " <TASK>",
        " dump_stack_lvl+0x48/0x60", " print_report+0x17f/0x470", " kasan_report+0xb0/0xe0",
        " acme_free_list+0x44/0x80", " acme_release+0x20/0x40", " </TASK>", "",
        "Allocated by task 99:", " kasan_save_stack+0x22/0x40", " __kmalloc+0x50/0x90", " acme_alloc+0x10/0x30",
        "==================================================================",
        "Disabling lock debugging due to kernel taint"),
        "kasan", "KASAN: use-after-free Read in acme_free_list", "acme_free_list", False),
    "KASAN in memcpy names the caller": (_log(
        "BUG: KASAN: slab-out-of-bounds in memcpy+0x20/0x60", "Write of size 16 at addr ffff888012340000 by task x/1",
        "Call Trace:", " dump_stack+0x10/0x20", " kasan_report+0x30/0x40", " memcpy+0x20/0x60",
        " acme_fill+0x50/0x90", " acme_ioctl+0x10/0x20",
        "=================================================================="),
        "kasan", "KASAN: slab-out-of-bounds Write in acme_fill", "acme_fill", False),
    "KMSAN": (_log(
        "BUG: KMSAN: uninit-value in acme_parse+0x120/0x200", " acme_parse+0x120/0x200",
        " acme_recv+0x60/0x90", "", "Uninit was created at:", " slab_post_alloc_hook+0x10/0x20",
        "CPU: 0 PID: 1 Comm: x Not tainted 6.1.0", "=" * 66),
        "kmsan", "KMSAN: uninit-value in acme_parse", "acme_parse", False),
    "KCSAN": (_log(
        "BUG: KCSAN: data-race in acme_count / acme_reset", "", "write to 0xffff8880 of 4 bytes by task 1 on cpu 0:",
        " acme_reset+0x10/0x20", "=================================================================="),
        "kcsan", "KCSAN: data-race in acme_count / acme_reset", "acme_count", False),
    "KFENCE": (_log(
        "BUG: KFENCE: out-of-bounds read in acme_peek+0x30/0x50", "",
        "Out-of-bounds read at 0xffff8c3f2e291fff (1B left of kfence-#72):", " acme_peek+0x30/0x50",
        " acme_ioctl+0x10/0x20", "=================================================================="),
        "kfence", "KFENCE: out-of-bounds read in acme_peek", "acme_peek", False),
    "UBSAN": (_log(
        "UBSAN: array-index-out-of-bounds in drivers/acme/table.c:77:9", "index 9 is out of range for type 'u8 [8]'",
        "CPU: 0 PID: 1 Comm: x Not tainted 6.1.0", "Call Trace:", " <TASK>", " dump_stack_lvl+0x48/0x60",
        " __ubsan_handle_out_of_bounds+0xa0/0xd0", " acme_lookup+0x55/0x70", *TRACE_TAIL,
        "================================================================================"),
        "ubsan", "UBSAN: array-index-out-of-bounds in acme_lookup", "acme_lookup", False),
    "WARNING": (_log(
        "------------[ cut here ]------------",
        "WARNING: CPU: 0 PID: 7 at drivers/acme/core.c:300 acme_stop+0x30/0x40 [acme]",
        "Modules linked in: acme", "RIP: 0010:acme_stop+0x30/0x40 [acme]", "Call Trace:", " <TASK>",
        " acme_remove+0x10/0x20 [acme]", *TRACE_TAIL, "---[ end trace 0000000000000000 ]---"),
        "warning", "WARNING in acme_stop", "acme_stop", False),
    "WARNING, 4.x stack without RIP": (_log(
        "WARNING: CPU: 1 PID: 3 at net/acme/sock.c:88 acme_sock_bind+0x99/0xa0",
        "Modules linked in:", "Call Trace:", " [<ffffffff81a1c0d2>] dump_stack+0x32/0x40",
        " [<ffffffff8109a5c1>] __warn+0xe1/0x100", " [<ffffffff8109a6bd>] warn_slowpath_null+0x1d/0x20",
        " [<ffffffff81f0a099>] acme_sock_bind+0x99/0xa0", " [<ffffffff81e00a10>] SYSC_bind+0x80/0x100",
        "---[ end trace 2222222222222222 ]---"),
        "warning", "WARNING in acme_sock_bind", "acme_sock_bind", False),
    "lockdep possible deadlock": (_log(
        "======================================================",
        "WARNING: possible circular locking dependency detected", "6.1.0 #1 Not tainted",
        "------------------------------------------------------", "acmed/12 is trying to acquire lock:",
        "ffff888003f0a0c8 (&dev->lock){+.+.}-{3:3}, at: acme_flush+0x20/0x80", "",
        "but task is already holding lock:", "ffff888003f0a100 (&q->mutex){+.+.}-{3:3}, at: acme_queue+0x10/0x40",
        "", "stack backtrace:", "Call Trace:", " <TASK>", " dump_stack_lvl+0x48/0x60",
        " __lock_acquire+0x100/0x200", " lock_acquire+0xc0/0x2f0", " acme_flush+0x20/0x80", " </TASK>"),
        "lockdep", "possible deadlock in acme_flush", "acme_flush", False),
    "lockdep inconsistent lock state": (_log(
        "================================", "WARNING: inconsistent lock state", "6.1.0 #1 Not tainted",
        "--------------------------------", "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.",
        "acmed/12 [HC0[0]:SC1[1]:HE1:SE0] takes:", "ffff8880 (&acme->lock){+.?.}-{2:2}, at: acme_timer+0x10/0x30",
        "stack backtrace:", "Call Trace:", " <IRQ>", " dump_stack_lvl+0x48/0x60", " mark_lock+0x100/0x200",
        " _raw_spin_lock+0x30/0x40", " acme_timer+0x10/0x30", " call_timer_fn+0x20/0x100", " </IRQ>", " <TASK>",
        " acme_loop+0x10/0x20", " </TASK>"),
        "lockdep", "inconsistent lock state in acme_timer", "acme_timer", False),
    "RCU stall": (_log(
        "rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu: \t0-....: (2100 ticks this GP)",
        "Call Trace:", " <IRQ>", " rcu_sched_clock_irq+0x300/0x800", " update_process_times+0x60/0xa0",
        " __sysvec_apic_timer_interrupt+0x50/0x100", " sysvec_apic_timer_interrupt+0x70/0x90", " </IRQ>",
        " <TASK>", " asm_sysvec_apic_timer_interrupt+0x16/0x20", "RIP: 0010:acme_poll+0x20/0x40",
        " acme_wait_ready+0x10/0x30", " acme_write+0x40/0x80", " vfs_write+0xc0/0x2a0", " ksys_write+0x60/0xe0",
        *TRACE_TAIL),
        "rcu-stall", "INFO: rcu detected stall in acme_write", "acme_write", True),
    "soft lockup": (_log(
        "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [acmed:77]", "Modules linked in: acme",
        "RIP: 0010:acme_spin+0x8/0x20 [acme]", "Call Trace:", " <TASK>", " acme_work_fn+0x10/0x30 [acme]",
        " process_one_work+0x1c0/0x380", " worker_thread+0x50/0x3c0", " kthread+0xe0/0x110", " </TASK>"),
        "soft-lockup", "BUG: soft lockup in acme_work_fn", "acme_work_fn", True),
    "hard lockup": (_log(
        "watchdog: Watchdog detected hard LOCKUP on cpu 2", "Modules linked in: acme",
        "RIP: 0010:acme_irq_spin+0x8/0x20 [acme]", "Call Trace:", " <TASK>", " acme_isr+0x10/0x30 [acme]",
        " </TASK>"),
        "hard-lockup", "hard LOCKUP in acme_irq_spin", "acme_irq_spin", True),
    "hung task": (_log(
        "INFO: task acmed:1234 blocked for more than 143 seconds.", "      Not tainted 6.1.0 #1",
        '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
        "task:acmed state:D stack:0 pid:1234 ppid:2 flags:0x00004000", "Call Trace:", " <TASK>",
        " __schedule+0x2f0/0x950", " schedule+0x5b/0xd0", " schedule_preempt_disabled+0x11/0x20",
        " __mutex_lock.constprop.0+0x3a0/0x6b0", " acme_sync+0x30/0x90", " acme_release+0x10/0x20",
        " __fput+0x90/0x250", " task_work_run+0x60/0xa0", " </TASK>"),
        "hung-task", "INFO: task hung in acme_sync", "acme_sync", True),
    "memory leak (kmemleak)": (_log(
        "unreferenced object 0xffff888004b2c000 (size 64):", '  comm "acmed", pid 7, jiffies 4294893470 (age 12.3s)',
        "  hex dump (first 32 bytes):", "    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................",
        "  backtrace:", "    [<ffffffff812f9a1e>] kmem_cache_alloc_trace+0x16e/0x2b0",
        "    [<ffffffffc0a01234>] acme_new_ctx+0x24/0x80 [acme]",
        "    [<ffffffffc0a01400>] acme_open+0x10/0x40 [acme]"),
        "memory-leak", "memory leak in acme_new_ctx", "acme_new_ctx", False),
    "panic without a report": (_log(
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        "CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1", "Call Trace:", " <TASK>",
        " dump_stack_lvl+0x48/0x60", " panic+0x118/0x2f0", " mount_block_root+0x1d3/0x1ea",
        " prepare_namespace+0x136/0x165", " </TASK>", "---[ end Kernel panic - not syncing: VFS ]---"),
        "panic", "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)", "mount_block_root", True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_gives_its_title_function_and_fatality(name: str) -> None:
    text, kind, title, function, fatal = CASES[name]
    reports = parse_all(text)
    assert len(reports) == 1, [r.title for r in reports]
    report = reports[0]
    assert (report.kind, report.title, report.function, report.fatal) == (kind, title, function, fatal)
    assert not report.corrupted, report.corrupted_reason
    starts = [line for line in text.split("\n") if is_crash_start(line)]
    assert bool(starts) == fatal  # a finding's head is no crash start
    assert parse_reports(text) == ([report] if fatal else [])


def test_a_finding_followed_by_a_panic_is_one_fatal_report() -> None:
    text = CASES["KASAN use-after-free"][0] + "\n" + _log("Kernel panic - not syncing: panic_on_warn set ...")
    (report,) = parse_reports(text)
    assert (report.kind, report.fatal, report.panic) == ("kasan", True, True)
    assert report.title == "KASAN: use-after-free Read in acme_free_list"


def test_a_memory_leak_report_ends_at_the_first_line_that_is_not_its_own() -> None:
    text = CASES["memory leak (kmemleak)"][0] + "\n" + _log("acme: device ready")
    parser = LinuxConsoleParser(include_warnings=True)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        parser.feed_line(line, number)
    assert not parser.in_report
    (leak,) = parser.reports()
    assert (leak.title, leak.last_line, leak.corrupted) == ("memory leak in acme_new_ctx", len(lines) - 1, False)


def test_findings_are_handed_out_apart_from_crashes_and_in_order() -> None:
    text = "\n".join([CASES["WARNING"][0], CASES["memory leak (kmemleak)"][0], CASES["divide error"][0]])
    parser = LinuxConsoleParser()
    for number, line in enumerate(text.split("\n"), start=1):
        parser.feed_line(line, number)
    assert [r.title for r in parser.flush()] == ["divide error in acme_rate"]
    assert [r.title for r in parser.findings()] == ["WARNING in acme_stop", "memory leak in acme_new_ctx"]
    assert [r.title for r in parse_all(text)] == ["WARNING in acme_stop", "memory leak in acme_new_ctx",
                                                  "divide error in acme_rate"]


def test_a_stack_header_with_other_output_instead_of_frames_is_corrupted_without_a_function() -> None:
    text = _log("INFO: task acmed:1 blocked for more than 120 seconds.", "Call Trace:",
                "acme: device reset", "usb 1-1: new high-speed USB device", "random: crng init done",
                "eth0: link up", " </TASK>")
    (report,) = parse_all(text)
    assert (report.function, report.corrupted, report.corrupted_reason) == (None, True, NO_FRAMES)
    assert report.title == "INFO: task hung"


def test_lines_of_other_tasks_do_not_lend_a_frame_to_the_report() -> None:
    """With caller ids (CONFIG_PRINTK_CALLER), only the reporting task's lines are read."""
    lines = ["[   10.000000][ T100] BUG: kernel NULL pointer dereference, address: 0000000000000000",
             "[   10.000001][ T100] Oops: 0000 [#1] SMP",
             "[   10.000002][ T200] RIP: 0010:other_task_fn+0x1/0x2",
             "[   10.000003][ T100] RIP: 0010:acme_read+0x9/0x30",
             "[   10.000004][ T100] Call Trace:",
             "[   10.000005][ T200]  other_caller+0x1/0x2",
             "[   10.000006][ T100]  vfs_read+0x90/0x150",
             "[   10.000007][ T100]  ksys_read+0x60/0xe0",
             "[   10.000008][ T100]  do_syscall_64+0x3b/0x90",
             "[   10.000009][ T100] ---[ end trace 0000000000000000 ]---"]
    (report,) = parse_all("\n".join(lines))
    assert report.function == "acme_read"


def test_the_skip_list_is_one_table_of_commented_groups() -> None:
    names = {pattern for group in SKIP_GROUPS.values() for pattern in group}
    for never_the_bug in ("kfree", "memcpy", "__memset", "_raw_spin_lock", "kasan_report", "dump_stack", "panic",
                          "printk", "copy_from_user", "lock_acquire"):
        assert any(__import__("re").search(p, never_the_bug) for p in names), never_the_bug


@pytest.mark.parametrize("line", [
    "[    1.000000] WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
    "[    1.000000] INFO: lockdep is turned off.",
    "[    1.000000] traps: acmed[3615] general protection fault ip:7feb96eb56a1 sp:20000fd0 error:0 in acmed",
    "[    1.000000] usb 1-1: device descriptor read/64, error -71",
])
def test_lines_that_share_a_reports_words_open_no_report(line: str) -> None:
    assert parse_all(line + "\n" + line) == []


# --- older formats -----------------------------------------------------------------

OLD_FORMATS: dict[str, tuple[str, str, str | None]] = {
    # 3.x/4.x lockdep: heads inside "[ ... ]", frames after "at: [<pc>]".
    "lockdep in brackets": (_log(
        "=======================================================",
        "[ INFO: possible circular locking dependency detected ]", "4.4.0 #1 Not tainted",
        "-------------------------------------------------------", "acmed/246 is trying to acquire lock:",
        " (&acme->mutex){+.+.+.}, at: [<ffffffff8105bbd0>] acme_flush+0x20/0xb0", "",
        "but task is already holding lock:", " (rtnl_mutex){+.+.+.}, at: [<ffffffff8105bc00>] rtnl_lock+0x17/0x20"),
        "possible deadlock in acme_flush", "acme_flush"),
    # 4.x KASAN put the address on its head line and printed "by task" after the size.
    "KASAN with the address on its head": (_log(
        "BUG: KASAN: slab-out-of-bounds in acme_get+0x1a3/0x1d0 at addr ffff8801c464b568",
        "Read of size 8 by task acmed/6860", "Call Trace:", " [<ffffffff81d91149>] dump_stack+0xc1/0x128",
        " [<ffffffff8153c2dc>] kasan_report+0x21c/0x500", " [<ffffffff8265fad3>] acme_get+0x1a3/0x1d0",
        " [<ffffffff82660055>] acme_read+0x295/0x340",
        "=================================================================="),
        "KASAN: slab-out-of-bounds Read in acme_get", "acme_get"),
    # 4.x hung task: the task line and raw stack words before an unmarked trace.
    "hung task without <TASK>": (_log(
        "INFO: task acmed:2293 blocked for more than 120 seconds.", "      Not tainted 4.4.132+ #53",
        "acmed           D ffff88008ad8f5b0     0  2293      1 0x00000000",
        " ffff88008ad8f5b0 ffff8800b5584ee8 ffff8800b5584ef8 1ffff100115b1eaa", "Call Trace:",
        " [<ffffffff82a9df9c>] schedule+0x7c/0x1b0", " [<ffffffff82aae624>] schedule_timeout+0x3d4/0x690",
        " [<ffffffff82aae250>] ? usleep_range+0x130/0x130", " [<ffffffff82aab9b0>] __down+0x130/0x250",
        " [<ffffffff81201a13>] down+0x63/0x80", " [<ffffffff81226da1>] acme_claim+0x31/0x80",
        " [<ffffffff8122c341>] acme_open+0x21/0xc0"),
        "INFO: task hung in acme_claim", "acme_claim"),
    # 32-bit arm: "PC is at", and frames as "(caller) from (callee+off)".
    "arm Oops": (_log(
        "Unable to handle kernel NULL pointer dereference at virtual address 00000008",
        "Internal error: Oops: 17 [#1] SMP ARM", "PC is at acme_parse+0x18/0x60",
        "LR is at acme_ioctl+0x40/0x90", "Backtrace: ",
        "[<c04a1234>] (acme_parse) from [<c04a1400>] (acme_ioctl+0x40/0x90)",
        "[<c04a1400>] (acme_ioctl) from [<c0200abc>] (vfs_ioctl+0x30/0x44)",
        "---[ end trace 0123456789abcdef ]---"),
        "BUG: unable to handle kernel NULL pointer dereference in acme_parse", "acme_parse"),
}


@pytest.mark.parametrize("name", sorted(OLD_FORMATS))
def test_older_kernels_formats_give_the_same_titles(name: str) -> None:
    text, title, function = OLD_FORMATS[name]
    (report,) = parse_all(text)
    assert (report.title, report.function) == (title, function)


# --- what the monitor counts as a crash ----------------------------------------------

def _monitor_verdict(text: str) -> Verdict:
    monitor = Monitor(LinuxFamily())
    lines = ["[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
             "HARNESS-BOOT-START mode=normal sensor=vulnerable",
             "HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0", *text.split("\n"),
             "HARNESS-BOOT-COMPLETE mode=normal sensor=vulnerable"]
    for number, line in enumerate(lines):
        monitor.observe_line(line, number * 0.01)
    verdict = monitor.decide(len(lines) * 0.01 + 1, final=True)
    assert verdict is not None
    return verdict


def test_findings_never_make_the_monitor_call_a_crash() -> None:
    findings = "\n".join(CASES[name][0] for name in sorted(CASES) if not CASES[name][4])
    verdict = _monitor_verdict(findings)
    assert verdict.crash is None and verdict.verdict == "healthy", verdict.reason


@pytest.mark.parametrize("name", sorted(name for name in CASES if CASES[name][4]))
def test_each_crash_kind_is_the_monitors_crash(name: str) -> None:
    text, _kind, title, _function, _fatal = CASES[name]
    verdict = _monitor_verdict(text)
    assert verdict.crash is not None and verdict.crash.title == title
