"""Reading a report's JSON input field by field: a wrong type is one line naming the file, the
field and the fix, never a traceback from deep inside the page code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputFileError


def load_object(path: Path, fix: str) -> dict[str, Any]:
    """The JSON object in `path`; `fix` says what writes a good one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not UTF-8 text: {fix}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not JSON (line {exc.lineno}: {exc.msg}): {fix}") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{path}: expected a JSON object, got {type(obj).__name__}: {fix}")
    return obj


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          list: "a list", dict: "an object"}


class Fields:
    """Typed access to one JSON object of `path`; `where` is its place (e.g. machines[3])."""

    def __init__(self, obj: Any, path: Path, where: str, fix: str) -> None:
        self.path, self.where, self.fix = path, where, fix
        if not isinstance(obj, dict):
            raise self.error("", "an object", obj)
        self.obj: dict[str, Any] = obj

    def error(self, key: str, expected: str, got: Any) -> InputFileError:
        field = f"{self.where}.{key}" if self.where and key else (self.where or key or "(top)")
        shown = json.dumps(got)[:60] if not isinstance(got, (dict, list)) else type(got).__name__
        return InputFileError(f"{self.path}: field {field} must be {expected}, got {shown}: {self.fix}")

    def get(self, key: str, kind: type, required: bool = False) -> Any:
        """The field's value checked against `kind` (int also accepted for float; bool never
        for int); None when absent or null unless `required`."""
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.error(key, _NAMES[kind], value)
            return None
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise self.error(key, _NAMES[kind] + ("" if required else " or null"), value)
        return value

    def objects(self, key: str, required: bool = False) -> list[Fields]:
        """A list of objects, each as Fields."""
        items = self.get(key, list, required) or []
        return [Fields(item, self.path, f"{self.where + '.' if self.where else ''}{key}[{i}]", self.fix)
                for i, item in enumerate(items)]


def resolve(base: Path, value: str | None) -> Path | None:
    """A path from a report's JSON: absolute as is, relative to the report directory."""
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path
