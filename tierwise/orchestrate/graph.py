"""A plan of models for a plain-language request: a graph of tool calls, in TaskBench's form.

A node names a tool and its arguments. An argument is an attached file (``example.jpg``),
a literal, or ``<node-i>``: the output of node i. Links say which node feeds which; the
references in arguments say what flows. Internally links are node indices, since one
tool may appear twice; TaskBench's form names tools, and :meth:`TaskGraph.from_taskbench`
resolves the names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierwise.errors import InputError

NODE_REF = re.compile(r"<node-(\d+)>")


@dataclass(frozen=True)
class TaskNode:
    task: str
    arguments: tuple[str, ...] = ()

    def refs(self) -> list[int]:
        """The nodes whose outputs this node reads, in argument order."""
        return [int(m.group(1)) for a in self.arguments for m in NODE_REF.finditer(a)]


@dataclass(frozen=True)
class Link:
    source: int
    target: int


@dataclass(frozen=True)
class TaskGraph:
    nodes: tuple[TaskNode, ...]
    links: tuple[Link, ...] = ()

    @classmethod
    def from_taskbench(cls, data: Mapping[str, Any]) -> TaskGraph:
        """A graph from ``{"task_nodes": [...], "task_links": [...]}``; link names are
        resolved to the first node of that tool (the source before the target)."""
        raw_nodes = data.get("task_nodes")
        if not isinstance(raw_nodes, list):
            raise InputError("task_nodes: expected a list of {task, arguments}", param="task_nodes")
        nodes = tuple(_node(raw, i) for i, raw in enumerate(raw_nodes))
        raw_links = data.get("task_links") or []
        if not isinstance(raw_links, list):
            raise InputError("task_links: expected a list of {source, target}", param="task_links")
        links = tuple(_link(raw, i, nodes) for i, raw in enumerate(raw_links))
        return cls(nodes, links)

    def to_taskbench(self) -> dict[str, Any]:
        names = [n.task for n in self.nodes]
        return {
            "task_nodes": [{"task": n.task, "arguments": list(n.arguments)} for n in self.nodes],
            "task_links": [
                {"source": names[k.source], "target": names[k.target]} for k in self.links
            ],
        }

    def dependencies(self) -> dict[int, set[int]]:
        """Each node's predecessors: the nodes it reads and the nodes linked into it."""
        deps: dict[int, set[int]] = {i: set() for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            deps[i].update(r for r in node.refs() if r != i)
        for link in self.links:
            deps[link.target].add(link.source)
        return deps

    def order(self) -> list[int]:
        """The nodes in an order that runs every node after its predecessors (Kahn's),
        or an InputError naming a cycle."""
        deps = {i: set(d) for i, d in self.dependencies().items()}
        done: list[int] = []
        ready = sorted(i for i, d in deps.items() if not d)
        while ready:
            i = ready.pop(0)
            done.append(i)
            for j, d in deps.items():
                if i in d:
                    d.discard(i)
                    if not d and j not in done and j not in ready:
                        ready.append(j)
        if len(done) < len(self.nodes):
            stuck = [self._label(i) for i in sorted(set(deps) - set(done))]
            raise InputError(f"the task graph has a cycle through {stuck}", param="task_links")
        return done

    def resource_links(self) -> list[tuple[str, str]]:
        """Links as TaskBench's evaluation derives them: from ``<node-i>`` arguments, by
        tool name (a node reading itself is not a link)."""
        out = []
        for i, node in enumerate(self.nodes):
            for r in node.refs():
                if r != i and r < len(self.nodes):
                    out.append((self.nodes[r].task, node.task))
        return out

    def _label(self, i: int) -> str:
        return f"node {i} ({self.nodes[i].task})"


def _node(raw: Any, i: int) -> TaskNode:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("task"), str):
        raise InputError(f"task_nodes[{i}]: expected {{task, arguments}}", param="task_nodes")
    arguments = raw.get("arguments") or []
    if not isinstance(arguments, Sequence) or isinstance(arguments, str):
        raise InputError(f"task_nodes[{i}].arguments: expected a list", param="task_nodes")
    return TaskNode(raw["task"], tuple(_argument(a) for a in arguments))


def _argument(value: Any) -> str:
    """TaskBench arguments are strings, with a few dicts and lists in the original data."""
    if isinstance(value, Mapping):
        value = next(iter(value.values()), "")
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return str(value)


def _link(raw: Any, i: int, nodes: tuple[TaskNode, ...]) -> Link:
    if not isinstance(raw, Mapping):
        raise InputError(f"task_links[{i}]: expected {{source, target}}", param="task_links")
    names = [n.task for n in nodes]
    source, target = raw.get("source"), raw.get("target")
    if source not in names or target not in names:
        missing = [x for x in (source, target) if x not in names]
        raise InputError(
            f"task_links[{i}]: {missing} is not a node of the graph; nodes: {names}",
            param="task_links",
        )
    s = names.index(source)
    later = [j for j, name in enumerate(names) if name == target and j != s]
    t = next((j for j in later if j > s), later[0] if later else names.index(target))
    return Link(s, t)
