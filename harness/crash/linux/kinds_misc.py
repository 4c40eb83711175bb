"""WARNINGs, memory leaks, panics, and the remaining `BUG:`/`INFO:` reports.

A WARNING is a finding: the kernel carries on.  Its guilty frame is the
instruction pointer of the trap (then the stack), as for a fault; some files'
WARNINGs are their caller's misuse and get a title of their own.  A panic with
a report before it joins that report (see `parser.py`); a panic alone is titled
by its reason.  `Kernel panic - not syncing: Fatal exception` (or `panic_on_warn
set`, `hung_task: blocked tasks`) alone means the report before it was lost.
"""

from __future__ import annotations

from .kind import Kind, k

_FINDING = {"fatal": False}
_WARN = {"fatal": False, "locate": "warning", "ends_with_trace": True}

WARNING_KINDS: tuple[Kind, ...] = (
    k("warning", r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)", "WARNING: ODEBUG bug in {f}",
      skip=("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree", "__free_", "debug_check",
            "kobject_"), **_WARN),
    k("warning", r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)", "WARNING: bad usercopy in {f}",
      skip=("usercopy", "__check"), **_WARN),
    k("warning", r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)", "WARNING: kobject bug in {f}", skip=("kobject_",),
      **_WARN),
    k("warning", r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)", "WARNING: proc registration bug in {f}",
      skip=("proc_",), **_WARN),
    k("warning", r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)", "WARNING: refcount bug in {f}",
      skip=("refcount", "kobject_"), **_WARN),
    k("warning", r"WARNING: .*kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {f}",
      skip=("lock_sock", "release_sock"), **_WARN),
    k("warning", r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {f}",
      skip=("kmalloc", "krealloc", "slab", "kmem"), **_WARN),
    k("warning", r"WARNING: .*mm/vmalloc\.c.*__vmalloc_node", "WARNING: zero-size vmalloc in {f}", **_WARN),
    k("warning", r"WARNING: .* usb_submit_urb", "WARNING in {f}/usb_submit_urb",
      skip=("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg", "usb_control_msg"),
      **_WARN),
    # `WARNING: CPU: 0 PID: 1 at f.c:12 f+0x1/0x2` (4.x to 6.x), `WARNING: at f.c:12 f+0x1/0x2()` (3.x),
    # `WARNING: f.c:12 at f+0x1/0x2, CPU#0: comm/1` and `... at 0x12, CPU#0` (6.19+).
    k("warning", r"WARNING: (?:CPU: \d+ PID: \d+ )?(?:\[.*\] )?at (?:\S+ )?(?P<hf>[A-Za-z0-9_]+)[.+]",
      "WARNING in {f}", **_WARN),
    k("warning", r"WARNING: .* at \S+:\d+ (?P<hf>[A-Za-z0-9_]+)[.+]", "WARNING in {f}", **_WARN),
    k("warning", r"WARNING: (?:\[.*\] )?\S+:\d+ at (?:(?P<hf>[A-Za-z0-9_]+)[.+,]|0x)", "WARNING in {f}", **_WARN),
    k("warning", r"WARNING: (?:CPU: \d+ PID: \d+ )?at ", "WARNING in {f}", **_WARN),
    k("warning", r"WARNING: kernel stack regs at \S+ in \S* has bad '(?P<what>[^']+)' value",
      "WARNING: kernel stack regs has bad '{what}' value", locate="none", **_FINDING),
    k("warning", r"WARNING: kernel stack frame pointer at \S+ in \S* has bad value",
      "WARNING: kernel stack frame pointer has bad value", locate="none", **_FINDING),
    k("warning", r"WARNING:\s*$", "WARNING: corrupted", locate="none", corrupted="a WARNING line with no text",
      **_FINDING),
    # Any other WARNING: line the kernel prints is titled by its words.
    k("warning", r"(?P<line>WARNING: .*)", "{line}", locate="none", **_FINDING),
)

# kmemleak: syzkaller-style "BUG: memory leak", or the kmemleak report itself
# (/sys/kernel/debug/kmemleak copied to the console).  Allocation helpers are skipped.
LEAK_KINDS: tuple[Kind, ...] = (
    k("memory-leak", r"BUG: memory leak|unreferenced object 0x", "memory leak in {f}", locate="after",
      anchor=r"backtrace(?: \(crc [0-9a-f]*\))?:", skip=("kmemleak", "mmap", "kmem", "slab", "alloc",
                                                         "create_object", "idr_get", "list_lru_init", "kasprintf",
                                                         "kvasprintf", "pcpu_create", "strdup", "strndup",
                                                         "memdup"), **_FINDING),
)

PANIC_KINDS: tuple[Kind, ...] = (
    k("panic", r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: "
      r"(?P<hf>[A-Za-z0-9_]+)[.+]", "kernel panic: stack is corrupted in {f}", locate="head"),
    k("panic", r"Kernel panic - not syncing: stack-protector:", "kernel panic: stack is corrupted in {f}",
      skip=("stack_chk",)),
    k("panic", r"Kernel panic - not syncing: Attempted to kill init!", "kernel panic: Attempted to kill init!"),
    k("panic", r"Kernel panic - not syncing: Couldn't open N_TTY ldisc", "kernel panic: Couldn't open N_TTY ldisc"),
    k("panic", r"Kernel panic - not syncing: (?P<reason>Fatal exception|panic_on_warn set|hung_task: blocked tasks)",
      "kernel panic: {reason}", corrupted="a panic that follows a report, without the report"),
    k("panic", r"Kernel panic - not syncing:? ?(?P<reason>.*)", "kernel panic: {reason}"),
)

OTHER_KINDS: tuple[Kind, ...] = (
    k("bug", r"BUG: Bad page (?P<what>state|cache)", "BUG: Bad page {what} in {f}", locate="after",
      anchor=r"page last allocated", skip=(r"(?:free|put|get|update|release)_page", "free_unref", r"^_*folio",
                                           "truncate_inode_pages", "page_frag_free", "alloc", "vmap",
                                           "page_owner")),
    k("bug", r"BUG: Bad page map", "BUG: Bad page map", locate="none"),
    k("bug", r"BUG: Bad rss-counter state", "BUG: Bad rss-counter state", locate="none"),
    k("bug", r"BUG: non-zero (?P<what>nr_ptes|nr_pmds) on freeing mm", "BUG: non-zero {what} on freeing mm",
      locate="none"),
    k("bug", r"BUG: Dentry .* still in use", "BUG: Dentry still in use in {f}", locate="body",
      body_fields=(("f", r"\[(unmount) of "),)),
    k("bug", r"BUG kmalloc-.*: Object already free", "BUG: Object already free", locate="none"),
    k("bug", r"BUG:\s*$", "BUG: corrupted", locate="none", corrupted="a BUG: line with no text"),
    k("bug", r"BUG: (?P<what>.*)", "BUG: {what}", locate="none"),
    k("info", r"INFO: (?P<what>Freed|Allocated) in (?P<hf>[A-Za-z0-9_]+)", "INFO: {what} in {f}", locate="head",
      corrupted="only the allocation part of a KASAN report", **_FINDING),
    k("info", r"INFO:\s*$", "INFO: corrupted", locate="none", corrupted="an INFO: line with no text", **_FINDING),
    k("info", r"(?P<line>INFO: .*)", "{line}", locate="none", **_FINDING),
    k("netdev-leak", r"unregister_netdevice: waiting for .* to become free",
      "unregister_netdevice: waiting for DEV to become free", locate="none", **_FINDING),
    k("vfs", r"VFS: Close: file count is 0", "VFS: Close: file count is zero (use-after-free)", locate="none",
      **_FINDING),
    k("vfs", r"VFS: Busy inodes after unmount", "VFS: Busy inodes after unmount (use-after-free)", locate="none",
      **_FINDING),
)
