"""Plain-language requests with their tool graphs, in TaskBench's JSON-lines form.

Each line: ``id``, ``type`` (single, chain or dag), ``instruction`` and the graph's
``task_nodes`` and ``task_links``. Planners learn from these, and are scored on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tierwise.errors import InputError
from tierwise.orchestrate.graph import TaskGraph


@dataclass(frozen=True)
class Example:
    id: str
    kind: str  # single, chain or dag
    text: str
    graph: TaskGraph
    # task_links by tool name as the record states them: the graph keeps only the links
    # between its own nodes (one TaskBench record links to a tool it does not have)
    stated_links: tuple[tuple[str, str], ...] = ()


def load_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise InputError(f"{path}: no such file of example plans (TaskBench-form JSON lines)")
    return parse_examples(path.read_text(encoding="utf-8"), str(path))


def default_examples() -> list[Example]:
    """tierwise's own small set of requests over the tools a default cluster serves: what
    the learned planner learns from when no other examples are given."""
    text = resources.files("tierwise.defaults").joinpath("plans.jsonl").read_text("utf-8")
    return parse_examples(text, "the embedded example plans")


def parse_examples(text: str, where: str) -> list[Example]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw: Any = json.loads(line)
            out.append(_example(raw))
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise InputError(f"{where}: line {number}: {exc}") from exc
    if not out:
        raise InputError(f"{where}: no example plans")
    return out


def _example(raw: dict[str, Any]) -> Example:
    stated = [_named_link(link) for link in raw.get("task_links") or []]
    names = {n.get("task") for n in raw.get("task_nodes") or [] if isinstance(n, dict)}
    inside = [{"source": s, "target": t} for s, t in stated if {s, t} <= names]
    graph = TaskGraph.from_taskbench({**raw, "task_links": inside})
    kind = raw.get("type") or _kind(graph)
    return Example(str(raw["id"]), str(kind), str(raw["instruction"]), graph, tuple(stated))


def _named_link(raw: Any) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise InputError("task_links: expected {source, target}", param="task_links")
    return str(raw.get("source")), str(raw.get("target"))


def _kind(graph: TaskGraph) -> str:
    """single, chain or dag, as TaskBench types a graph without saying."""
    if len(graph.nodes) == 1:
        return "single"
    deps = graph.dependencies()
    fan_in = any(len(d) > 1 for d in deps.values())
    fan_out = any(sum(i in d for d in deps.values()) > 1 for i in deps)
    return "dag" if fan_in or fan_out else "chain"
