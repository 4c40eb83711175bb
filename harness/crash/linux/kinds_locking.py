"""Lock debugging: lockdep's reports (possible deadlock, inconsistent lock state, ...),
spinlock debugging, and the atomic-context checks (`scheduling while atomic`, `sleeping
function called from invalid context`, `using smp_processor_id() in preemptible`).

Lockdep prints `WARNING:` (older kernels `INFO:` inside `[ ... ]`) and carries on:
those are findings (`fatal=False`).  The `BUG:` ones were always crashes here and
stay so.  For a deadlock the guilty function is where the lock is being taken: the
`at: f+0x..` of the first lock named after `is trying to acquire lock`.
"""

from __future__ import annotations

from .kind import Kind, k

_W = r"(?:\[ )?(?:WARNING|INFO): "
_FINDING = {"fatal": False}
# Work-queue functions take locks on behalf of work items: a deadlock in them is the work item's.
_WORKQUEUE = ("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue")

LOCKING_KINDS: tuple[Kind, ...] = (
    k("lockdep", r"WARNING: possible circular locking dependency detected", "possible deadlock in {f}",
      locate="at-trace", anchor=r"is trying to acquire lock", skip=_WORKQUEUE, **_FINDING),
    k("lockdep", _W + r"possible circular locking dependency detected", "possible deadlock in {f}",
      locate="at", anchor=r"is trying to acquire lock", **_FINDING),
    k("lockdep", _W + r"possible irq lock inversion dependency detected", "possible deadlock in {f}",
      locate="at", anchor=r"just changed the state of lock", **_FINDING),
    k("lockdep", r"WARNING: .*-safe -> .*-unsafe lock order detected", "possible deadlock in {f}",
      locate="after", anchor=r"which became .* at:", **_FINDING),
    k("lockdep", _W + r".*-safe -> .*-unsafe lock order detected", "possible deadlock in {f}",
      locate="at", anchor=r"is trying to acquire", **_FINDING),
    k("lockdep", _W + r"possible recursive locking detected", "possible deadlock in {f}",
      locate="at", anchor=r"is trying to acquire lock", **_FINDING),
    k("lockdep", r"WARNING: inconsistent lock state", "inconsistent lock state in {f}", **_FINDING),
    k("lockdep", _W + r"inconsistent lock state", "inconsistent lock state in {f}", locate="at",
      anchor=r"takes", **_FINDING),
    k("lockdep", r"(?P<w>WARNING|INFO): suspicious RCU usage", "{w}: suspicious RCU usage in {f}",
      skip=("rcu", "kmem", "slab"), **_FINDING),
    k("lockdep", r"WARNING: held lock freed!", "WARNING: held lock freed in {f}", locate="at",
      anchor=r"held lock freed", **_FINDING),
    k("lockdep", r"WARNING: bad unlock balance detected!", "WARNING: bad unlock balance in {f}",
      locate="ip-line", **_FINDING),
    k("lockdep", r"WARNING: .*still has locks held!", "WARNING: still has locks held in {f}", locate="at",
      anchor=r"still has locks held", **_FINDING),
    k("lockdep", r"(?P<w>WARNING|BUG): lock held when returning to user space",
      "{w}: lock held when returning to user space in {f}", locate="at",
      anchor=r"leaving the kernel with locks still held", **_FINDING),
    k("lockdep", r"WARNING: [Nn]ested lock was not taken", "WARNING: nested lock was not taken in {f}",
      locate="at", anchor=r"is trying to lock", **_FINDING),
    k("lockdep", r"INFO: trying to register non-static key", "INFO: trying to register non-static key in {f}",
      skip=("stack", "lock", "IRQ"), **_FINDING),
    # BUG: reports of the lock and atomic-context checkers (crashes, as every BUG: line was here).
    k("bug", r"BUG: (?P<lk>spinlock|rwlock) (?P<what>lockup suspected|already unlocked|recursion|cpu recursion"
      r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)", "BUG: {lk} {what} in {f}",
      skip=("spin_", "_lock", "_unlock")),
    k("bug", r"BUG: .*still has locks held!", "BUG: still has locks held in {f}", locate="pc"),
    k("bug", r"BUG: scheduling while atomic", "BUG: scheduling while atomic in {f}", skip=("schedule",)),
    k("bug", r"BUG: bad unlock balance detected!", "BUG: bad unlock balance in {f}", locate="ip-line"),
    k("bug", r"BUG: held lock freed!", "BUG: held lock freed in {f}", locate="pc"),
    k("bug", r"BUG: sleeping function called from invalid context", "BUG: sleeping function called from "
      "invalid context in {f}"),
    k("bug", r"BUG: using (?P<what>[a-z_]+)\(\) in preemptible", "BUG: using {what}() in preemptible code in {f}",
      skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu")),
    k("bug", r"BUG: workqueue leaked lock or atomic", "BUG: workqueue leaked lock or atomic in {f}",
      locate="body", body_fields=(("f", r"last function: ([A-Za-z0-9_]+)"),)),
    k("bug", r"BUG: Invalid wait context", "WARNING: locking bug in {f}", skip=("lock_sock", "release_sock")),
)
