"""Which judge a campaign uses: `--path boot` (BootJudge, a fresh machine per file) or
`--path fast` (harness.fastpath.SnapshotJudge, a restored memory snapshot per file).

harness.fastpath is imported only when asked for or when choosing the default, so the boot
path works without it. The default is fast when that package is importable and supports the
profile's family (its `supports(profile)` when it has one, else the Linux family only), else boot.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ..config import Profile
from ..errors import InputFileError
from .judge import BootJudge, FileJudge

Progress = Callable[[str], None]
PATHS = ("boot", "fast")


def _fastpath() -> Any | None:
    try:
        return importlib.import_module("harness.fastpath")
    except ImportError:
        return None  # not installed: the boot path


def _fast_supports(module: Any, profile: Profile) -> bool:
    supports = getattr(module, "supports", None)
    return bool(supports(profile)) if callable(supports) else profile.family == "linux"


def choose_path(asked: str | None, profile: Profile) -> str:
    """The path to judge on: the one asked for (fast must be available), else the default."""
    if asked == "boot":
        return "boot"
    module = _fastpath()
    if asked == "fast":
        if module is None or not hasattr(module, "SnapshotJudge"):
            raise InputFileError("--path fast: the snapshot fast path (harness.fastpath) is not installed "
                                 "in this harness; use --path boot")
        if not _fast_supports(module, profile):
            refusal = getattr(module, "fast_path_refusal", lambda _p: None)(profile) or (
                f"the fast path does not support the {profile.family} family of profile {profile.name!r}")
            raise InputFileError(f"--path fast: {refusal}; use --path boot")
        return "fast"
    if module is not None and hasattr(module, "SnapshotJudge") and _fast_supports(module, profile):
        return "fast"
    return "boot"


def judge_factory(path: str, profile: Profile, sensor: str | None, progress: Progress) -> Callable[[], FileJudge]:
    """A function that makes one judge of `path` (one per worker)."""
    if path == "fast":
        module = _fastpath()
        assert module is not None
        snapshot_judge = module.SnapshotJudge
        return lambda: snapshot_judge(profile, sensor, progress)  # type: ignore[no-any-return]
    return lambda: BootJudge(profile, sensor, progress)
