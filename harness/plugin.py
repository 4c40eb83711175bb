"""The pytest plugin (entry point `pytest11`): options, markers, the `vm` fixture, reports.

A test asks for `vm`, puts content on it, boots it and waits for the verdict:

    @pytest.mark.expect_boot_loop
    def test_cf291_loops(vm):
        vm.install_content({"C-00000291-00000000-00000032.sys": data})
        vm.boot()
        assert vm.wait_verdict().verdict == "boot-loop"

Each test gets artifacts/<run id>/<test id>/ (serial.log, events.jsonl,
verdict.json, content/, domain.xml, repro.txt). A failing test shows the
serial tail; JUnit gets the verdict, the crash title and the artifacts path
as properties; the terminal summary lists every crash seen.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .artifacts import default_root, new_run_id, test_dir, write_atomic
from .config import Profile, select_profile
from .driver import driver_module
from .testing import skip_or_fail

if TYPE_CHECKING:
    from .guest.linux_ref import ReferenceGuest
    from .recovery import RecoverableMachine
    from .vm.machine import Machine

_RUN_ID = pytest.StashKey[str]()
_CRASHES = pytest.StashKey[list[tuple[str, str, str]]]()
_MACHINE = pytest.StashKey["Machine"]()  # the vm fixture's
_MACHINES = pytest.StashKey[list["Machine"]]()  # every machine the test made
_UNWATCH = pytest.StashKey[Callable[[], None]]()
_SLOTS = itertools.count(1)
TEARDOWN_DRAIN_S = 120.0  # the background destroys of the last tests, at the end of the session
pytest_plugins = ["harness.rollout.pytest_fixture"]  # the `rollout` fixture (docs/rollout.md)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "boot-start driver test harness")
    group.addoption("--harness-config", type=Path, help="YAML file with profiles")
    group.addoption("--harness-profile", help="profile name (default linux-ref)")
    group.addoption("--harness-artifacts", type=Path, help="artifacts root (default $HARNESS_ARTIFACTS, else ./artifacts)")
    group.addoption("--harness-keep-vms", action="store_true",
                    help="keep the disk images of failed tests (the domain is always destroyed)")
    group.addoption("--harness-boot-timeout", type=float, help="seconds to a verdict (overrides the profile)")
    group.addoption("--harness-hang-timeout", type=float, help="seconds of silence that make a hang")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "expect_crash: the test's VM is expected to crash (verdict crashed or boot-loop)",
        "expect_boot_loop: the test's VM is expected to end in a boot loop",
        "expect_recovery(*paths): the test's VM loops, and recovery by each path (safe-mode, recovery-env) "
        "must bring it back healthy",
        "destructive: the test breaks its VM on purpose (never reuse it)",
        "expect_finding: the test's VM may report non-fatal kernel findings (WARNING, leak ...) in the "
        "driver's own module; without it such a finding fails the test",
        "vm: boots real VMs through libvirt (skipped without libvirt/QEMU, except under CI=true)",
        "family(name): the test's story is for guests of this family (linux, windows); it is deselected "
        "when the selected profile is of another family",
    ):
        config.addinivalue_line("markers", line)
    # One run id for the whole session: xdist workers take the controller's.
    worker_input = getattr(config, "workerinput", None)
    config.stash[_RUN_ID] = (worker_input or {}).get("harness_run_id") or os.environ.get("HARNESS_RUN_ID") \
        or new_run_id()
    config.stash[_CRASHES] = []
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "harness-xdist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests written for the selected profile's guest family: `make test-vms
    PROFILE=win11` runs the Windows stories, the default profile the Linux ones. A bad config
    is reported by the harness_profile fixture, not here."""
    try:
        family = select_profile(config.getoption("harness_config"), config.getoption("harness_profile")).family
    except Exception:  # noqa: BLE001 - the fixture raises it with the file and the key
        return
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("family")
        (drop if marker is not None and family not in marker.args else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class _XdistHooks:
    """pytest-xdist: one VM per worker, the run id shared, `-n auto` sized by cores and memory."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["harness_run_id"] = node.config.stash[_RUN_ID]

    def pytest_xdist_auto_num_workers(self, config: pytest.Config) -> int:
        return auto_workers(select_profile(config.getoption("harness_config"),
                                           config.getoption("harness_profile")).memory_mib)


def auto_workers(vm_memory_mib: int) -> int:
    """As many workers as cores, but never more VMs than half the free memory holds
    (QEMU's own footprint is about as large as a small guest's RAM)."""
    cores = os.cpu_count() or 1
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available_mib = int(meminfo["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return cores
    per_vm = 2 * vm_memory_mib + 256
    return max(1, min(cores, available_mib // per_vm))


@pytest.fixture(scope="session")
def harness_profile(pytestconfig: pytest.Config) -> Profile:
    profile = select_profile(pytestconfig.getoption("harness_config"), pytestconfig.getoption("harness_profile"))
    timeouts = profile.timeouts
    boot = pytestconfig.getoption("harness_boot_timeout")
    hang = pytestconfig.getoption("harness_hang_timeout")
    if boot or hang:
        timeouts = dataclasses.replace(timeouts, boot=boot or timeouts.boot, hang=hang or timeouts.hang)
    # Every machine of this worker runs on the worker's host (round robin over the profile's
    # hosts); `hosts` still lists them all, for the checks and the sweep.
    return dataclasses.replace(profile, timeouts=timeouts, uri=profile.uri_for_worker(_worker_index()))


def _worker_index() -> int:
    """This process's pytest-xdist worker number (gw3 -> 3); 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


@pytest.fixture(scope="session")
def harness_run_id(pytestconfig: pytest.Config) -> str:
    return pytestconfig.stash[_RUN_ID]


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest, harness_run_id: str) -> Path:
    root = request.config.getoption("harness_artifacts") or default_root()
    return test_dir(Path(root), harness_run_id, request.node.nodeid)


def _require_vm_host(profile: Profile) -> None:
    """Skip without QEMU or libvirt; under CI=true a missing part fails the run instead.
    A profile that names its hosts (`uris`) must reach every one of them: an unreachable host
    raises InfraError with the URI and the fix (a lab with a broken host is not a skip)."""
    from .errors import ConfigError, HarnessError
    from .vm.hosts import HostUri

    problem = None
    local = any(not HostUri.parse(uri).remote for uri in profile.hosts)
    if local and shutil.which("qemu-system-x86_64") is None:
        problem = "qemu-system-x86_64 not found (make setup)"
    else:
        try:
            import libvirt  # noqa: F401

            from .vm.connection import open_connection

            for uri in profile.hosts:
                open_connection(uri).close()
        except ImportError:
            problem = "libvirt-python is not installed (make setup)"
        except ConfigError:
            raise  # a URI that would accept any host key: bad input, never a skip
        except HarnessError as exc:  # InfraError with the fix in its message
            if profile.uris:
                raise
            problem = str(exc)
    if problem:
        skip_or_fail(problem)


def _start_vm_session(profile: Profile) -> None:
    """Once per worker before its first machine: every host answers, and what killed runs
    left behind on them is swept."""
    _require_vm_host(profile)
    from .errors import InfraError
    from .sweep import sweep_hosts

    swept = sweep_hosts(profile.hosts, profile.name_prefix)  # leaked by killed runs
    if swept.unreachable:
        raise InfraError("; ".join(swept.unreachable.values()))


def _prepare(pytestconfig: pytest.Config, profile: Profile, family: str) -> tuple[Any, str]:
    """What machines of `family` boot, prepared once by the family's plugin (the reference guest
    built and cached, a golden image checked), after the hosts answered and were swept. A
    remote host reads the domain's paths on its own disks: they must be the same files."""
    from .vm.hosts import check_shared_paths
    from .vm.registry import family_plugin

    plugin = family_plugin(family)
    _start_vm_session(profile)
    guest, sensor = plugin.prepare(profile, None, lambda _msg: None)
    artifacts_root = Path(pytestconfig.getoption("harness_artifacts") or default_root())
    for uri in profile.hosts:
        check_shared_paths(uri, plugin.shared_files(guest), [artifacts_root])
    return guest, sensor


@pytest.fixture(scope="session")
def reference_guest(pytestconfig: pytest.Config, harness_profile: Profile) -> ReferenceGuest:
    """The Linux reference guest, built once (cached by its inputs), whatever the profile."""
    guest, _sensor = _prepare(pytestconfig, harness_profile, "linux")
    return guest  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def prepared_guest(pytestconfig: pytest.Config, harness_profile: Profile) -> tuple[Any, str]:
    """(what the profile's machines boot, the sensor build they run), from its guest family."""
    return _prepare(pytestconfig, harness_profile, harness_profile.family)


@pytest.fixture(scope="session")
def machine_guest(prepared_guest: tuple[Any, str]) -> Any:
    """What the profile's machines boot: the reference guest, a Windows golden image, ..."""
    return prepared_guest[0]


@pytest.fixture
def vm(request: pytest.FixtureRequest, harness_profile: Profile, prepared_guest: tuple[Any, str],
       artifacts_dir: Path, harness_run_id: str) -> Generator[RecoverableMachine, None, None]:
    """A machine of the selected profile, not yet booted; destroyed after the test."""
    from .recovery import RecoverableMachine
    from .vm.machine import MachineSpec

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    guest, sensor = prepared_guest
    machine = RecoverableMachine(MachineSpec(
        profile=harness_profile, guest=guest, artifacts=artifacts_dir, run_id=harness_run_id,
        test_id=request.node.nodeid, slot=f"{worker}-{next(_SLOTS)}", sensor=sensor))
    request.node.stash[_MACHINE] = machine
    write_atomic(artifacts_dir / "repro.txt", f"pytest {request.node.nodeid} --harness-profile "
                 f"{harness_profile.name}\n")
    yield machine
    failed = any(getattr(request.node, f"rep_{when}", None) is not None
                 and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
    # The domain is destroyed in the background: the next test does not wait for QEMU to exit.
    machine.close(keep=failed and request.config.getoption("harness_keep_vms"), background=True)


def _check_markers(item: pytest.Item, machines: list[Machine]) -> None:
    """Compare what every machine the test touched did over the whole test with what the markers
    expect, whether or not the test waited for a verdict: a crash the monitor saw during
    expect(), run(), a transport or the guest agent counts as much as a judged one."""
    verdicts = [v for m in machines for v in m.verdicts]
    names = [v.verdict for v in verdicts]
    crashes = [title for m in machines for title in m.crashes_seen()]
    recoveries = {path: r for m in machines for path, r in m.recoveries.items()}
    where = f"(artifacts: {', '.join(str(m.artifacts) for m in machines)})"
    last = verdicts[-1].one_line() if verdicts else "no verdict (the test never called wait_verdict())"
    recovery = item.get_closest_marker("expect_recovery")
    expects_crash = any(item.get_closest_marker(m) for m in ("expect_crash", "expect_boot_loop")) or recovery
    if item.get_closest_marker("expect_boot_loop") and "boot-loop" not in names:
        pytest.fail(f"expected a boot loop, got {last} {where}", pytrace=False)
    if item.get_closest_marker("expect_crash") and not crashes:
        pytest.fail(f"expected a crash, got {last} {where}", pytrace=False)
    if crashes and not expects_crash:
        judged = next((v.one_line() for v in verdicts if v.crash is not None), None)
        pytest.fail(f"unexpected crash: {judged or crashes[0]} {where}", pytrace=False)
    # A WARNING, a leak ... in the driver's own module, on a machine that kept running: a bug
    # all the same, unless the test says it expects one.
    own = [f for m in machines for f in m.findings_seen() if f.module == driver_module(m.profile.driver)]
    if own and not item.get_closest_marker("expect_finding"):
        pytest.fail(f"finding in the driver: {own[0].title} ({len(own)} in all) {where}", pytrace=False)
    for path in (recovery.args if recovery else ()):
        result = recoveries.get(path)
        if result is None or result.result != "recovered":
            what = f"{result.result}: {result.reason}" if result else "not run"
            pytest.fail(f"expected recovery by {path}, got {what} {where}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Watch for every Machine the test makes (the vm fixture's, or its own) until teardown."""
    try:
        from .vm.spec import watch_new_machines
    except ImportError:  # no libvirt-python here: no machine can be made
        return (yield)

    machines: list[Machine] = []
    item.stash[_MACHINES] = machines
    item.stash[_UNWATCH] = watch_new_machines(machines.append)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        unwatch = item.stash.get(_UNWATCH, None)
        if unwatch is not None:
            unwatch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    machines = item.stash.get(_MACHINES, [])
    if machines:
        _check_markers(item, machines)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    machine = item.stash.get(_MACHINE, None)
    if machine is None or report.when != "call":
        return report
    verdict = machine.verdict
    item.user_properties.append(("artifacts", str(machine.artifacts)))
    if verdict is not None:
        item.user_properties.append(("verdict", verdict.verdict))
        item.user_properties.append(("boots", str(verdict.boots)))
    crashed = next((v for v in machine.verdicts if v.crash is not None), None)
    if crashed is not None and crashed.crash is not None:
        item.user_properties.append(("crash_title", crashed.crash.title))
        item.config.stash[_CRASHES].append((item.nodeid, crashed.verdict, crashed.crash.title))
    elif seen := machine.crashes_seen():  # seen during expect(), run() ..., never judged
        item.user_properties.append(("crash_title", seen[0]))
        item.config.stash[_CRASHES].append((item.nodeid, "crash", seen[0]))
    for finding in machine.findings_seen():  # non-fatal: listed with the crashes
        item.config.stash[_CRASHES].append((item.nodeid, "finding", finding.title))
    for path, result in machine.recoveries.items():
        item.user_properties.append((f"recovery_{path}", result.result))
    if report.failed:
        report.sections.append(("serial tail", machine.serial_tail()))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The last tests' domains are still being destroyed in the background: wait for them
    (an xdist worker may leave with os._exit, which joins no thread)."""
    from .vm import teardown

    left = teardown.drain(TEARDOWN_DRAIN_S)
    if left:
        session.config.get_terminal_writer().line(
            f"harness: {left} domain teardown(s) still running after {TEARDOWN_DRAIN_S:.0f} s; "
            "`harness clean` removes what they leave")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    crashes = config.stash.get(_CRASHES, [])
    if not crashes:
        return
    terminalreporter.section("harness: crashes seen")
    for nodeid, verdict, title in crashes:
        terminalreporter.write_line(f"{verdict:<11} {title}  ({nodeid})")
    root = config.getoption("harness_artifacts") or default_root()
    terminalreporter.write_line(f"artifacts: {Path(root) / config.stash[_RUN_ID]}")
