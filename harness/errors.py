"""Typed errors.  Each message names the file, the problem and, where there is one, the fix."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness reports to a user."""


class InputFileError(HarnessError):
    """A file given on the command line cannot be used (missing, a directory, too big...)."""


class InfraError(HarnessError):
    """The host is not able to run something (a tool missing, a build failing)."""
