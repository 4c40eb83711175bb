"""Package data that lives outside the package.

The VM templates (vm-templates/), the sample driver's sources (drivers/, build outputs
excluded) and the fixtures (fixtures/) sit at the checkout's root, where developers edit and
build them. A wheel carries them as harness/_data/<dir>: this build step copies them into the
build tree after the Python modules. harness/paths.py uses harness/_data/ when it exists (an
installed copy) and the checkout's directories otherwise. Everything else about the package
is in pyproject.toml; MANIFEST.in puts the same directories into an sdist.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("vm-templates", "drivers", "fixtures")
# Build outputs (drivers/build/, Kbuild's in-place files) and caches never ship.
IGNORE = shutil.ignore_patterns("build", "__pycache__", "*.py[co]", "*.o", "*.ko", "*.mod", "*.mod.c",
                                ".*.cmd", "Module.symvers", "modules.order")


class BuildPyWithData(build_py):
    """build_py, then a copy of DATA_DIRS into <build_lib>/harness/_data/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install uses the checkout itself
        target = Path(self.build_lib) / "harness" / "_data"
        shutil.rmtree(target, ignore_errors=True)  # a stale build tree must not ship removed files
        for name in DATA_DIRS:
            shutil.copytree(ROOT / name, target / name, ignore=IGNORE)


setup(cmdclass={"build_py": BuildPyWithData})
