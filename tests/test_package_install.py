"""The harness installed as a package, in a vendor's own project.

A wheel is built from a copy of this checkout, installed (not editable) into a fresh venv, and
a small vendor-style project in a temporary directory outside the checkout uses it: its own
harness.yaml (a profile with boot_loop_threshold 3), its own test file using the `vm` fixture
(no conftest.py), run by the venv's pytest, and `harness reproduce --json` of its good content
with that profile.
Artifacts must land in that directory's ./artifacts; nothing may be written into the checkout
or into the venv's site-packages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.paths import CONTENT_FIXTURES, REPO_ROOT, cache_dir
from harness.testing import skip_or_fail

pytestmark = pytest.mark.vm

# The vendor project's test: its profile comes from its own harness.yaml (a boot-loop threshold
# the built-in profile does not have), its content from its own directory.
VENDOR_TEST = '''
from pathlib import Path

HERE = Path(__file__).parent


def test_good_content_is_healthy_{token}(vm):
    assert (vm.profile.name, vm.profile.boot_loop_threshold) == ("vendor", 3)
    vm.install_content({{"C-00000291-00000000-00000001.sys": (HERE / "content" / "good.sys").read_bytes()}})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "healthy", verdict
'''

VENDOR_CONFIG = """\
profiles:
  vendor:
    sensor: vulnerable
    boot_loop_threshold: 3
"""


def _copy_source(dest: Path) -> Path:
    """The checkout's files as `pip install <checkout>` reads them. A copy, because setuptools
    builds in the source tree (build/lib/, *.egg-info): a copy keeps the checkout untouched and
    never ships a module a stale build/lib still holds."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}
        if Path(directory) == REPO_ROOT:
            skip |= {n for n in names if n in ("build", ".git", "artifacts", ".venv")}
        if Path(directory) == REPO_ROOT / "drivers":
            skip |= {"build"} & set(names)
        return skip

    return Path(shutil.copytree(REPO_ROOT, dest, ignore=ignore))


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file under root but Python's bytecode caches."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _paths_with(root: Path, token: str, skip: tuple[str, ...]) -> list[Path]:
    found = []
    for directory, dirs, files in os.walk(root):
        if Path(directory) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        found += [Path(directory) / n for n in dirs + files if token in n]
    return found


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_installed_wheel_runs_a_vendor_project(tmp_path: Path, reference_guest: object) -> None:
    if importlib.util.find_spec("wheel") is None:  # setuptools < 70.1 builds wheels with it
        skip_or_fail("the wheel package is missing: pip install wheel (in the test extra: make setup)")
    wheels, venv, vendor = tmp_path / "wheels", tmp_path / "venv", tmp_path / "vendor-project"
    source = _copy_source(tmp_path / "source")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                  "-w", wheels, source], tmp_path, dict(os.environ), 300)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("harness-*.whl")

    # The system site gives libvirt-python, pytest and the other dependencies; the harness
    # itself must come from the wheel.
    # (No pip inside the venv: this Python's pip installs into it, which saves seconds.)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    install = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
                    wheel], tmp_path, dict(os.environ), 300)
    assert install.returncode == 0, install.stdout + install.stderr
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp_path, dict(os.environ), 60).stdout.strip())
    before = _files(site)

    token = uuid.uuid4().hex[:10]
    (vendor / "content").mkdir(parents=True)
    shutil.copyfile(CONTENT_FIXTURES / "good.sys", vendor / "content" / "good.sys")
    (vendor / "harness.yaml").write_text(VENDOR_CONFIG)
    (vendor / f"test_vendor_{token}.py").write_text(VENDOR_TEST.format(token=token))

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HARNESS_", "PYTEST_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # This run's cache (<checkout>/build, or the outer HARNESS_CACHE): the installed copy's guest
    # and drivers (built in a copy of their sources under <cache>/drivers/) are built there once,
    # not from scratch on every run. A cache-less first run was timed by hand (docs/install.md).
    cache = cache_dir()
    env["HARNESS_CACHE"] = str(cache)

    where = _run([python, "-c", "import harness, harness.paths as p; print(harness.__file__); "
                  "print(p.INSTALLED); print(p.VM_TEMPLATES); print(p.DRIVERS)"], vendor, env, 60)
    harness_file, installed, templates, drivers = where.stdout.split()
    assert Path(harness_file).is_relative_to(venv), where.stdout + where.stderr
    assert installed == "True" and Path(templates).is_relative_to(site)
    assert Path(drivers).is_relative_to(cache / "drivers")

    tests = _run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--harness-config", "harness.yaml",
                  "--harness-profile", "vendor"], vendor, env, 900)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "1 passed" in tests.stdout, tests.stdout[-2000:]
    runs = list((vendor / "artifacts").glob(f"*/test_vendor_{token}.py--test_good_content_is_healthy_{token}"))
    assert len(runs) == 1 and (runs[0] / "serial.log").is_file(), list((vendor / "artifacts").rglob("*"))[:20]
    recorded = json.loads((runs[0] / "verdict.json").read_text())
    assert (recorded["verdict"], recorded["profile"]) == ("healthy", "vendor"), recorded

    repro = _run([venv / "bin" / "harness", "reproduce", "content/good.sys", "--config", "harness.yaml",
                  "--profile", "vendor", "--json"], vendor, env, 600)
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    result = json.loads(repro.stdout)
    assert result["verdict"] == "healthy" and result["profile"] == "vendor", result
    artifacts = Path(result["artifacts"])
    assert artifacts.is_relative_to(vendor / "artifacts") and (artifacts / "serial.log").is_file(), result

    # Nothing written into the installed package, nor into the checkout (its build/ is the cache
    # this test chose; other agents' runs may write elsewhere there, so look for this run's names).
    assert _files(site) == before
    assert not (site / "build").exists() and not (site / "artifacts").exists()
    assert _paths_with(REPO_ROOT, token, (".git", "build")) == []
    assert not (REPO_ROOT / "artifacts" / artifacts.parent.name).exists()
    assert not (REPO_ROOT / "artifacts" / runs[0].parent.name).exists()
