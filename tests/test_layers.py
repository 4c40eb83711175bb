"""The shape of the code: layers that import only downwards, a VM core that knows no guest
family, small modules. Read from the source (imports inside functions and under
TYPE_CHECKING count: each is a layer knowing one above it)."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "harness"
MAX_LINES = 400
# What the generic VM core may never import: the concrete families and everything above it.
NOT_FOR_THE_CORE = ("harness.guest", "harness.windows", "harness.families.linux", "harness.families.windows",
                    "harness.recovery", "harness.reproduce", "harness.plugin", "harness.cli", "harness.sweep")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The harness modules `path` imports, wherever the import statement stands."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != here and not here.startswith(name + "."):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = list(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def cycle_from(graph_: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path of modules, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph_[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph_):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_anywhere_in_the_harness() -> None:
    cycle = cycle_from(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_vm_core_knows_no_guest_family_and_nothing_above_it() -> None:
    wrong = {f"{module} imports {target}" for module, targets in graph().items() if module.startswith("harness.vm")
             for target in targets if target.startswith(NOT_FOR_THE_CORE)}
    assert not wrong, sorted(wrong)


def test_no_module_is_longer_than_one_reader_holds() -> None:
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
