"""The shape of the code: imports flow one way, and modules and functions stay small.

Packages are layered top to bottom; a module may import its own package and any package
below it, never one above. The request path reads downward, gateway → placement →
runtime/net → ledger, with the plug-in packages (codecs, models) and the base modules
(config, errors, ...) underneath. Every import counts, lazy ones and ``TYPE_CHECKING``
ones included: a cycle that only types close is still a cycle a reader must untangle.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tierwise"

#: top to bottom; names in one row are peers and must not import each other
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"bench"},
    {"federated"},
    {"optimize"},
    {"gateway"},
    {"orchestrate"},
    {"routing", "privacy"},
    {"placement"},
    {"runtime"},
    {"net"},
    {"ledger"},
    {"codecs"},
    {"models"},
    {"datasets"},
    {"config"},
    {"units", "arrays_file", "cache", "optional", "descend", "policy"},
    {"errors"},
    {"defaults"},  # the embedded spec, prices and constants (data)
    {"tierwise"},  # the package's own __init__: its version string
]
LEVEL = {name: i for i, row in enumerate(LAYERS) for name in row}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every ``tierwise`` module ``name`` imports, with the line, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import module` imports the module; `from module import name` not
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "tierwise" or target.startswith("tierwise."):
                yield target, node.lineno


def _unit(module: str) -> str:
    parts = module.split(".")
    return "tierwise" if len(parts) == 1 else parts[1]


def test_every_package_has_a_layer() -> None:
    units = {_unit(m) for m in MODULES}
    assert units - set(LEVEL) == set(), "add new packages to LAYERS in this test"


def test_every_tierwise_import_names_a_module_that_exists() -> None:
    """mypy ignores missing imports (for third-party packages), so a stale internal path
    would pass it; this does not."""
    stale = [
        f"{MODULES[name].relative_to(ROOT.parent)}:{line}: {target}"
        for name in MODULES
        for target, line in _imports(name, MODULES[name])
        if target not in MODULES
    ]
    assert stale == []


def test_no_package_imports_one_above_it_or_a_peer() -> None:
    wrong = []
    for name, path in MODULES.items():
        mine = LEVEL[_unit(name)]
        for target, line in _imports(name, path):
            theirs = LEVEL.get(_unit(target))
            if _unit(target) != _unit(name) and theirs is not None and theirs <= mine:
                where = path.relative_to(ROOT.parent)
                wrong.append(f"{where}:{line}: {_unit(name)} imports {target}")
    assert wrong == []


def test_no_module_import_cycles() -> None:
    graph = {
        n: {t for t, _ in _imports(n, p) if t in MODULES and t != n} for n, p in MODULES.items()
    }
    assert _a_cycle(graph) is None


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = exc.args[1]
        return cycle
    return None


def test_modules_stay_under_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_stay_under_60_lines() -> None:
    """Counted from the first line of the body: a Typer command's option list is its
    signature, and may be as long as its options."""
    long = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.body[0].lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}"] = length
    assert long == {}


def test_the_cycle_finder_finds_cycles() -> None:
    cycle = _a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    assert cycle is not None and set(cycle) == {"a", "b", "c"}
    assert _a_cycle({"a": {"b"}, "b": set()}) is None


def test_the_checks_read_this_tree() -> None:
    assert "tierwise.gateway.pipeline" in MODULES
    assert sys.version_info >= (3, 11)
