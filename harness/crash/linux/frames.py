"""Stack frames in Linux reports, and which of them can be the bug.

A kernel report names many functions; most of them are the machinery that
noticed or printed the bug, not the bug.  The guilty frame is the first frame,
in the order a report kind reads them, that is not in `SKIP_GROUPS` (nor in the
kind's own extra list).  Every pattern is a regular expression *searched* in the
function name (so `kasan` skips `__kasan_report` and `kasan_save_stack`); `^`
and `$` anchor the ones that must not catch more.

Stalls (RCU stalls, soft lockups) and hung tasks are different: the stack shows
a random point inside the looping or waiting code, so their frame is read
around an anchor (`stall_frame`, `hung_task_frame`) instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# --- the frames that are never the bug: the one list ------------------------

SKIP_GROUPS: dict[str, tuple[str, ...]] = {
    # Sanitizers and their report machinery: the bug is whoever they caught.
    "sanitizers": (
        "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
        "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
        r"(?:read|write)_once_.*nocheck", "print_address_description", "print_report", "__fortify_report",
        r"^__ubsan_", "stack_chk",
    ),
    # Printing, dumping and dying: printk, dump_stack, panic, BUG/WARN traps.
    "report machinery": (
        "panic", "printk", "dump_stack", "show_stack", "walk_stack", "dump_backtrace", "print_tainted",
        "warn_slowpath", "warn_alloc", "warn_bogus", "__warn", "report_bug", "fixup_bug", "print_usage_bug",
        "invalid_op", "do_error", r"_trap$", "do_trap", "handle_bug", r"^exc_", r"^asm_exc_",
        "program_check_exception", "program_check_common", "hex_dump_to_buffer", "print_hex_dump",
        "stack_trace_consume_entry", "arch_stack_walk", "stack_trace_save", "assertfail",
        "va_format", r"dev_(?:info|notice|warn|err|alert|crit|emerg)", "string", "pointer",
        "snprintf", "scnprintf", "kv?asprintf",
    ),
    # Memory allocators and page cache allocation: a fault there is the caller's bad size or pointer.
    "allocators": (
        "alloc_page", r"k?v?[mzc]alloc", "krealloc", "kmem_cache", "allocate_slab", "slab_",
        r"^kv?free$", "kfree_skb", r"folio_(?:alloc|unlock)", "filemap_alloc_folio", "__filemap_get_folio",
        "find_or_create_page", "do_read_cache_folio", "read_cache_page", "pagecache_get_page",
        "grab_cache_page_write_begin", "__alloc_frozen_pages", "memdup", "strn?dup", "ida_free",
        "__phys_addr",
    ),
    # String, memory and user-copy helpers: they touch what their caller passed.
    "string and copy helpers": (
        "memcpy", "memcmp", "memset", "memchr", "memmove", r"str(?:n?cmp|n?cpy|lcpy|scpy|n?len|n?str|chr)",
        r"copy_(?:to|from)_user", r"copy_(?:to|from)_iter", r"copy_(?:page|folio)_(?:to|from)_iter",
        r"^copyin$", r"^copyout$", "put_user", "get_user", "might_fault", "might_sleep", "__might_resched",
        r"extract_(?:user|iter)_to_sg", r"^crc\d+", "crc_itu_t",
    ),
    # Locking primitives and lockdep: the caller holds or takes the lock.
    "locking": (
        "lockdep", "lock_acquire", "lock_release", "lock_class", "mark_lock", r"(?:reacquire|mark)_held_locks",
        "print_unlock", "imbalance_bug", "raw_spin_rq", r"spin_(?:try)?lock", "spin_unlock",
        r"(?:read|write)_(?:try)?lock", r"(?:read|write)_unlock", r"^down$", r"down_(?:read|write)",
        "down_trylock", r"up_(?:read|write)", r"^_*mutex_", r"^rt_mutex_", "owner_on_cpu", r"osq_(?:un)?lock",
        r"^(?:un)?lock_page", r"bh_(?:en|dis)able", r"(?:trace|lockdep)_(?:hard|soft)irq", "lock_timer_base",
    ),
    # Atomics, bit operations, reference counts and lists: generic data structure helpers.
    "data structure helpers": (
        r"atomic(?:64)?_(?:dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
        r"(?:set|clear|change|test)_bit", r"^refcount_", r"^kref_", "ref_tracker", "seqprop_assert",
        r"list_(?:add|del|replace|move|splice)", r"^_*rb_", r"^klist_", r"xas_(?:start|load|find)",
        "rhashtable_lookup", "debug_object", r"(?:timer|work)_is_static_object",
    ),
    # Waiting, wake-ups, timers and work items: where a task parks, not why.
    "scheduling and waiting": (
        "__wake_up", r"^complete$", "wait_for_completion", "finish_wait", "del_timer", "__timer_delete_sync",
        "sk_stop_timer_sync", "__mod_timer", "flush_work", "__cancel_work_timer", "cancel_work_sync",
        "try_to_grab_pending", r"(?:flush|drain|destroy)_workqueue", "queue_work", "insert_work",
        "__queue_delayed_work", "queue_delayed_work_on", "kthread_stop", "cleanup_srcu_struct",
    ),
    # Device and object core: teardown paths that call back into the driver.
    "device and object core": (
        "kobject_", "add_uevent_var", "get_device_parent", r"^device_(?:add|del|unregister|destroy|release)$",
        "devres_release_all", "device_for_each_child", "device_remove_file", r"^put_device$", "sysfs_remove",
        "hwrng_unregister", "i2c_del_adapter", "__unregister_client", "rollback_registered",
        "unregister_netdev", "tty_unregister_device", r"^get_taint$",
    ),
    # USB core plumbing: the URB path belongs to the driver that submitted it.
    "usb core": (
        "dummy_urb_enqueue", r"usb_kill_(?:anchored_)?urbs?", "usb_control_msg", "usb_hcd_submit_urb",
        "usb_submit_urb",
    ),
    # MMIO accessors and VFS reference drops: they run on the caller's object.
    "accessors and reference drops": (
        r"read[bwlq]$", r"write[bwlq]$", "logic_in", "logic_out", r"^iput$", r"^iput_final$", r"^ihold$",
        "fast_dput", "dput", "drop_nlink", "mark_buffer_dirty", "find_lock_entries",
        "truncate_inode_pages_range", "perf_trace", "_indirect_thunk_",
    ),
    # Exception entry on arm64 (translation faults): the faulting code is the frame after them.
    "fault entry": (
        r"do_(?:kernel|translation)_fault", "do_mem_abort", "el1_abort", r"el1h_64_sync",
    ),
}


@lru_cache(maxsize=64)
def skip_regex(extra: tuple[str, ...] = ()) -> re.Pattern[str]:
    """One regex for every skip pattern, plus a report kind's extra ones."""
    patterns = [p for group in SKIP_GROUPS.values() for p in group] + list(extra)
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# Syscall and wrapper prefixes removed from a frame before it goes in a title
# (`__x64_sys_sendmsg` and `__se_sys_sendmsg` are the same syscall).
STRIP_PREFIXES = ("SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
                  "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_")


def title_name(function: str) -> str:
    """The frame as a title names it: the shortest result of removing one prefix."""
    best = function
    for prefix in STRIP_PREFIXES:
        if function.startswith(prefix) and len(function) - len(prefix) < len(best):
            best = function[len(prefix):]
    return best or function


# --- reading frames from lines ------------------------------------------------

_PC = r"\[<?(?:0x)?[0-9a-f]+>?\]"
_NAME = r"[A-Za-z0-9_]+"
_FRAME_RE = re.compile(
    rf"^\s*(?:{_PC}\s+){{0,2}}(?P<q>\?\s+)?(?P<func>{_NAME})(?:\.[\w.]*)?\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?"
    rf"(?:\s+\[(?P<mod>[\w-]+)\])?")
_FRAME_DOT_RE = re.compile(rf"^\s*(?:{_PC}\s+){{0,2}}(?P<func>{_NAME})\.(?:cold|isra|part|constprop|lto)")
# 32-bit arm: "[<c0123>] (foo) from [<c0456>] (bar+0x10/0x20)"
_ARM_FRAME_RE = re.compile(rf"^\s*{_PC} \((?P<func>{_NAME})\) from {_PC} \((?P<next>{_NAME})[.+]")
# The instruction pointer line: x86 `RIP: 0010:f+0x..`, 4.x `IP: [<..>] f+0x..`, i386 `EIP:`,
# powerpc `NIP`, arm64 `pc : f+0x..`, arm `PC is at f+0x..`.
IP_RE = re.compile(
    rf"(?:\b[ER]?IP:|\bNIP:?\s|(?:\b|e)pc\s*:|PC is at)\s*(?:[0-9a-f]{{4}}:)?(?:{_PC}\s+){{0,2}}"
    rf"(?:(?P<func>{_NAME})[.+](?:[^\s\]]*)(?:\s+\[(?P<mod>[\w-]+)\])?|0x[0-9a-f]+|\(null\)"
    rf"|\[<\s*\(null\)>\]\s+\(null\))")
# A line that starts a stack trace (a second one ends the first).
STACK_START_RE = re.compile(
    r"Call [Tt]race|Allocated(?: by task \d+)?:|Freed(?: by task \d+)?:|[^k] backtrace(?: \(crc [0-9a-f]*\))?:"
    r"|Backtrace:|Uninit was stored to memory at|Uninit was created at|Local variable .* created at")
CALL_TRACE_RE = re.compile(r"Call [Tt]race:|Backtrace:")


@dataclass(frozen=True)
class Frame:
    function: str
    module: str | None = None


def frames_in(line: str) -> list[Frame]:
    """The reliable frames one stack line names (none for `? f+0x..` guesses)."""
    if line.endswith(" (unreliable)"):
        return []
    match = _FRAME_RE.match(line)
    if match:
        return [] if match.group("q") else [Frame(match.group("func"), match.group("mod"))]
    match = _ARM_FRAME_RE.match(line)
    if match:
        return [Frame(match.group("func")), Frame(match.group("next"))]
    match = _FRAME_DOT_RE.match(line)
    return [Frame(match.group("func"))] if match else []


def ip_frame(line: str) -> tuple[bool, Frame | None]:
    """(is this an instruction pointer line, the function in it if it names one)."""
    match = IP_RE.search(line)
    if match is None:
        return False, None
    func = match.group("func")
    return True, (Frame(func, match.group("mod")) if func else None)


# --- stalls and hangs ------------------------------------------------------------

# Where a stalled CPU's stack stops being the loop and starts being the way in:
# the frame just above the first of these names the stall.
_STALL_ANCHORS = re.compile("|".join((
    # generic dispatchers: work items, syscall entry, softirqs, timers, kthreads
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2",
    "el0_svc_handler", "invoke_syscall", "ret_fast_syscall", "netif_receive_skb", "do_softirq", "call_timer_fn",
    "_run_timers", "run_timer_softirq", "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn", "^kthread$",
    "start_secondary", "cpu_startup_entry", "ret_from_fork",
    # module init: a driver's init function stalls under it (syzkaller, which loads no modules, has no such case)
    "^do_one_initcall$",
    # file operations: the syscall is too coarse, the callback names the driver
    "vfs_write", "vfs_read", "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write",
    "call_read_iter", "call_write_iter", "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl",
    "compat_ioctl", "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl", "do_iter_readv_writev",
    "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open",
    # sockets
    "^sock_sendmsg", "^sock_recvmsg", "^_*sock_release", "^setsockopt$", "kernel_setsockopt",
    "sock_common_setsockopt", "^listen$", "kernel_listen", "sk_common_release", "^sock_mmap", "^accept$",
    "kernel_accept", "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl", "^nfnetlink_rcv_msg",
    "^rtnetlink_rcv_msg", "^netlink_dump", "^(?:sys_)?(?:socketpair|connect|ioctl)",
    # page faults, returns to user space, cross-CPU calls, tasklets
    "__do_fault", "do_page_fault", "^page_fault$", "__fput", "task_work_run", "exit_to_usermode",
    "smp_call_function", "tasklet_action", "tasklet_hi_action",
)))


def stall_frame(names: list[str]) -> str | None:
    """The frame just above the first dispatcher in a stalled stack (None: no dispatcher)."""
    previous = names[0] if names else None
    for name in names:
        if _STALL_ANCHORS.search(name):
            return "smp_call_function" if "smp_call_function" in name else previous
        previous = name
    return None


# A hung task waits for something; two waits are common to many unrelated hangs and are
# named by what is waited for.
_HUNG_BUCKETS = (("rtnl_lock", None), ("synchronize_rcu", "synchronize_rcu"),
                 ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
                 ("synchronize_sched", "synchronize_rcu"))
_HUNG_WAITING = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait", "synchronize",
                 "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier",
                 "sleep")  # msleep/ssleep/usleep_range: the sleeper is the caller


def hung_task_frame(names: list[str]) -> str | None:
    """The function a hung task is stuck in: the first that is not a way of waiting."""
    for name in names:
        for needle, bucket in _HUNG_BUCKETS:
            if needle in name:
                return bucket or name
    for name in names:
        if not any(word in name for word in _HUNG_WAITING):
            return name
    return None
