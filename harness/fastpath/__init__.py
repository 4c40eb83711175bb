"""The snapshot fast path: content files judged from a restored memory snapshot of the booted
reference guest instead of a boot each (docs/fastpath.md).

    judge = SnapshotJudge(profile, "vulnerable")       # the snapshot: cached, or made once (~10 s)
    verdict = judge.judge("C-00000291-00000000-00000001.sys", data, artifacts_dir)
    judge.close()

`fast_path_refusal(profile)` says why a profile cannot use it (a Windows profile, `fast_path:
false`, a remote libvirt), or None.
"""

from __future__ import annotations

from .judge import UNCONFIRMED, SnapshotJudge, fast_path_refusal, supports

__all__ = ["SnapshotJudge", "UNCONFIRMED", "fast_path_refusal", "supports"]
