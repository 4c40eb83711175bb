"""One rule for a part this host lacks: skip the test on a developer's machine, fail it under CI.

A developer without libvirt, a cross compiler or root can still run what their machine
can; CI (`CI=true`) has every part installed by `make setup`, so there a missing part
is a broken set-up that must turn the run red, never a quiet skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_or_fail(message: str) -> NoReturn:
    """Skip with `message` (it should name the fix), or fail under CI=true."""
    if under_ci():
        pytest.fail(f"{message} (CI=true: a missing part fails the run)", pytrace=False)
    pytest.skip(message)


def require_module(name: str, fix: str) -> object:
    """Import `name`, or skip_or_fail naming `fix` (e.g. pytest-xdist for the many-workers tests)."""
    try:
        return __import__(name)
    except ImportError:
        skip_or_fail(f"python module {name} is not installed: {fix}")
