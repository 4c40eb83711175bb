"""Typed errors.  Each message names the file, the problem and, where there is one, the fix;
errors raised during a VM run end with the path of the run's artifacts."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base of every error the harness reports to a user."""


class InputFileError(HarnessError):
    """A file given on the command line cannot be used (missing, a directory, too big...)."""


class ConfigError(HarnessError):
    """A profile or config file is invalid; the message names the file and the key."""


class InfraError(HarnessError):
    """The host failed (libvirtd unreachable, QEMU killed, a tool missing): never a product bug."""


class VmError(HarnessError):
    """A VM outcome a test did not expect.  Carries the artifacts directory."""

    def __init__(self, message: str, artifacts: Path | None = None) -> None:
        self.artifacts = artifacts
        super().__init__(f"{message} (artifacts: {artifacts})" if artifacts else message)


class BootTimeout(VmError):
    """The guest did not reach its boot-complete marker in time."""


class CrashDetected(VmError):
    """The guest crashed (Linux Oops/panic, Windows bugcheck)."""


BugcheckDetected = CrashDetected  # the Windows name for the same event


class BootLoopDetected(VmError):
    """The guest crashed at N boots in a row with the content still on disk."""


class ConsoleTimeout(VmError):
    """console.expect() did not see its pattern in time."""


class DataDiskError(HarnessError):
    """A per-test data disk cannot be made or read back; the message names the image."""


class RecoveryMediumError(DataDiskError):
    """A recovery medium cannot be made: a bad script path, file name or hash.

    The message names the image (or the script) and the fix.
    """
