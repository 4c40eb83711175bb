"""Test harness for boot-start drivers and their content files (see README.md)."""

__version__ = "0.1.0"
