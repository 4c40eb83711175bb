"""Finishing a machine off the critical path.

`virDomainDestroy` waits for QEMU to exit: 1.4-1.8 s here, a quarter of what one
judged content file costs. Nothing the next test needs waits for it (a new machine
has a new name and its own disks), so a closed machine's domain is destroyed, its
domain log kept and its disks removed by a background worker. The process waits
for that work before it exits (the executor's threads are joined at interpreter
exit); a process killed first leaves a domain whose owner lock is free, which the
next sweep removes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

_WORKERS = 2
_guard = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: set[Future[None]] = set()


def submit(job: Callable[[], None]) -> Future[None]:
    """Run `job` in the background; its exceptions stay in the returned future."""
    global _executor
    with _guard:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="harness-teardown")
        future = _executor.submit(job)
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future[None]) -> None:
    with _guard:
        _pending.discard(future)


def drain(timeout: float) -> int:
    """Wait up to `timeout` s for every submitted teardown; return how many are still running."""
    with _guard:
        pending = set(_pending)
    if not pending:
        return 0
    _done, not_done = wait(pending, timeout=timeout)
    return len(not_done)
