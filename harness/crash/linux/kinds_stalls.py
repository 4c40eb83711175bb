"""Stalls and hangs: RCU stalls, soft and hard lockups, hung tasks, stack overflows.

A stalled CPU is caught at a random point of the loop, so the frame named is the
one just above the first dispatcher in its stack (`frames.stall_frame`); a hung
task is named by what it waits in (`frames.hung_task_frame`).  These are crashes
here, as they were: the machine is not making progress.
"""

from __future__ import annotations

from .kind import Kind, k

# The timer interrupt that caught the stalled CPU: its RIP and stack follow.
_TIMER_IRQ = r"apic_timer_interrupt|Exception stack|el1h_64_irq"

STALL_KINDS: tuple[Kind, ...] = (
    k("soft-lockup", r"(?:(?:NMI )?watchdog: )?BUG: soft lockup", "BUG: soft lockup in {f}", locate="ip-trace",
      extractor="stall"),
    k("hard-lockup", r"(?:NMI )?watchdog: (?:Watchdog detected hard LOCKUP|BUG: hard lockup)", "hard LOCKUP in {f}",
      locate="ip-trace"),
    k("rcu-stall", r"(?:rcu: )?INFO: rcu_(?:preempt|sched|bh|tasks)\w* (?:self-)?detected(?: expedited)? stall",
      "INFO: rcu detected stall in {f}", locate="stall", anchor=_TIMER_IRQ, skip=("apic_timer_interrupt", "rcu"),
      extractor="stall"),
    k("hung-task", r"INFO: task .{0,100}? blocked (?:in I/O wait )?for more than \d+ seconds",
      "INFO: task hung in {f}", extractor="hung"),
    k("hung-task", r"INFO: task .{0,100}? can't die for more than", "INFO: task can't die in {f}",
      skip=("schedule",)),
    k("stack-overflow", r"BUG: .*stack guard page was hit at", "BUG: stack guard page was hit in {f}",
      locate="ip-trace", extractor="stall"),
    k("stack-overflow", r"Kernel panic - not syncing: corrupted stack end", "kernel panic: corrupted stack end in {f}",
      skip=("schedule", "retint_kernel"), extractor="stall"),
    k("stack-overflow", r"Kernel panic - not syncing: kernel stack overflow", "kernel stack overflow in {f}",
      skip=("bad_stack",), extractor="stall"),
    k("bug", r"BUG: workqueue lockup", "BUG: workqueue lockup", locate="none"),
)
