"""The benchmarks time the harness by wrapping the functions it calls; when a refactor moves
one, the benchmark must fail here, in seconds, not at its next hour-long run."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

from .conftest import REPO

sys.path.insert(0, str(REPO / "bench"))


def test_every_function_the_benchmarks_wrap_still_exists_and_is_put_back() -> None:
    common = importlib.import_module("_common")
    before = {(m.__name__, a): getattr(m, a) for m, a in (
        (common.backend_mod, "build_data_disk"), (common.backend_mod, "render"),
        (common.machine_mod, "ConsoleReader"), (common.machine_mod, "open_connection"))}
    with common.instrumented():
        assert common.backend_mod.build_data_disk is not before[(common.backend_mod.__name__, "build_data_disk")]
    after = {key: getattr(sys.modules[key[0]], key[1]) for key in before}
    assert after == before


def test_the_recovery_benchmark_wraps_what_recover_calls() -> None:
    recovery = importlib.import_module("recovery")
    backend = recovery.backend_mod
    original = (backend.build_recovery_medium, backend.read_content_dir)
    machine = SimpleNamespace(destroy=lambda: None, boot=lambda mode="normal": None,
                              wait_verdict=lambda: None, wait_recovery_env=lambda: None)
    with recovery.recover_timed(machine) as calls:  # type: ignore[arg-type]
        machine.destroy()
        assert (backend.build_recovery_medium, backend.read_content_dir) != original
    assert [name for name, _, _ in calls] == ["destroy"]
    assert (backend.build_recovery_medium, backend.read_content_dir) == original
