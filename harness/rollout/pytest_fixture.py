"""The `rollout` fixture: a test rolls content out over a fleet and asserts on the result.

    @pytest.mark.expect_crash                      # the canary crashes on purpose
    def test_cf291_halts_at_the_canary(rollout):
        result = rollout(Path("cf291.sys"), fleet="vuln:3,hard:1", rings="2,50%,100%")
        assert result["halted_ring"] == 0 and result["healthy_at_end"] == result["fleet"]

    @pytest.mark.fleet("vuln:3,hard:1", rings="2,50%,100%")   # defaults for every call
    def test_the_good_file_reaches_every_machine(rollout):
        assert rollout(Path("good.sys"))["delivered"] == 4

`rollout(*content, fleet=, rings=, **options)` takes files (paths, or bytes written into the
test's artifacts) and the options of RolloutRequest (bake_boots, bake_s, halt_on, recover,
baseline, measure_unstaged, seed, max_boots); profiles come from --harness-config. It returns
the result object of rollout.json (docs/rollout.md), written under the test's artifacts
directory. Every machine of the fleet is judged by the plugin like any other: a test whose
rollout crashes a machine is marked expect_crash. Loaded by the harness plugin
(`pytest_plugins` in harness/plugin.py).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..artifacts import default_root, test_dir, write_atomic


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fleet(spec, rings=LIST): the fleet and rings the `rollout` fixture uses "
                            "by default, e.g. fleet('vuln:3,hard:1', rings='2,50%,100%')")


@pytest.fixture
def rollout(request: pytest.FixtureRequest, harness_run_id: str, prepared_guest: Any) -> Callable[..., dict[str, Any]]:
    """A function that runs one rollout over a fresh fleet and returns its result. (`prepared_guest`:
    the plugin's host checks, skip without QEMU or libvirt, and the sweep of killed runs.)"""
    from ..testing import skip_or_fail

    try:
        from .session import RolloutRequest, run_rollout
    except ImportError as exc:  # no libvirt-python: no fleet
        skip_or_fail(f"harness rollout needs {exc.name} (make setup)")
    marker = request.node.get_closest_marker("fleet")
    root = Path(request.config.getoption("harness_artifacts") or default_root())
    directory = test_dir(root, harness_run_id, request.node.nodeid)
    config = request.config.getoption("harness_config")
    counter = itertools.count(1)

    def run(*content: Path | bytes, fleet: str | None = None, rings: str | None = None,
            **options: Any) -> dict[str, Any]:
        n = next(counter)
        files = []
        for i, item in enumerate(content, 1):
            if isinstance(item, bytes):
                path = directory / f"update-{n}-{i}.sys"
                write_atomic(path, item)
                item = path
            files.append(Path(item))
        spec = fleet or (marker.args[0] if marker and marker.args else None)
        ring_list = rings or (marker.kwargs.get("rings") if marker else None) or "1,100%"
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
        outcome = run_rollout(RolloutRequest(
            content=files, fleet=spec, rings=ring_list, config=config, run_id=harness_run_id,
            run_dir=directory / f"rollout-{n}", artifacts_root=root, quiet=False,
            **{"max_boots": max(2, 2 * (os.cpu_count() or 1)), **options}))
        if outcome.infra_failure:
            raise AssertionError(f"rollout {n} ({worker}): infrastructure failure: "
                                 f"{outcome.result.get('infra_error')} (artifacts: {outcome.report_dir})")
        return outcome.result

    return run
