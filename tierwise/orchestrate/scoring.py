"""TaskBench's metrics for task graphs, as its ``evaluate.py`` defines them (resource links).

Each metric compares sets per example and is micro-averaged over examples: the true and
false positives and false negatives are summed first, then precision, recall and F1.

- **node F1**: the sets of tool names (``_`` read as a space). Only the catalog's tools
  count: a name outside it is neither a hit nor a miss, on either side.
- **edge F1** (resource links, TaskBench's default): a link ``source → target`` for each
  argument of a node that reads ``<node-k>``, k being another node; by tool name, every
  name counts.
- **task-link F1**: the links as the graph's ``task_links`` state them.
- **argument F1**: each argument as ``tool-name-value``; a ``<node-k>`` argument's name is
  the media type node k's tool writes and its value that tool's name; any other
  argument's name is its content type (by file extension) and its value the text itself.
- **valid**: the share of answers the catalog accepts for the attached files (a graph
  that could run).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tierwise.errors import InputError
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.graph import NODE_REF, TaskGraph
from tierwise.orchestrate.planner import Prediction

KINDS = ("single", "chain", "dag")
_T = TypeVar("_T", bound=Hashable)
# TaskBench's own extension lists for an argument's content type (a substring test).
_CONTENT_TYPES = (
    ("image", ("jpg", "png", "jpeg", "gif", "bmp", "tiff", "svg", "ico")),
    ("audio", ("mp3", "wav", "wma", "ogg", "aac", "flac", "aiff", "au")),
    ("video", ("mp4", "avi", "mov", "flv", "wmv", "mkv", "webm", "m4v", "mpg", "mpeg")),
)


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def f1(self) -> float | None:
        """F1 in percent; None when neither side has anything (nothing to score)."""
        if self.tp + self.fp + self.fn == 0:
            return None
        return 200.0 * self.tp / (2 * self.tp + self.fp + self.fn)


@dataclass(frozen=True)
class Scores:
    """One group of examples (a graph type, or all): F1s in percent, valid as a share."""

    examples: int
    node_f1: float | None
    edge_f1: float | None
    link_f1: float | None
    argument_f1: float | None
    valid: float


def normal_name(name: str) -> str:
    return name.replace("_", " ")


def node_counts(gold: TaskGraph | None, pred: TaskGraph | None, catalog: Catalog) -> Counts:
    want, got = _names(gold), _names(pred)
    known = want | got
    known &= set(catalog.tools)
    return Counts(len(known & want & got), len((known & got) - want), len((known & want) - got))


def resource_links(graph: TaskGraph | None) -> set[tuple[str, str]]:
    """Links by tool name, from each ``<node-k>`` argument (k another node of the graph)."""
    if graph is None:
        return set()
    return {(normal_name(s), normal_name(t)) for s, t in graph.resource_links()}


def task_links(graph: TaskGraph | None) -> set[tuple[str, str]]:
    if graph is None:
        return set()
    names = [normal_name(n.task) for n in graph.nodes]
    return {(names[k.source], names[k.target]) for k in graph.links}


def stated_links(example: Example) -> set[tuple[str, str]]:
    """The links an example's record states, by name (also one naming no node of it)."""
    if not example.stated_links:
        return task_links(example.graph)
    return {(normal_name(s), normal_name(t)) for s, t in example.stated_links}


def argument_items(graph: TaskGraph | None, catalog: Catalog) -> set[str]:
    """Each argument as ``tool-name-value`` (see the module's note)."""
    if graph is None:
        return set()
    names = [normal_name(n.task) for n in graph.nodes]
    items = set()
    for i, node in enumerate(graph.nodes):
        for argument in node.arguments:
            ref = NODE_REF.search(argument)
            if ref is None:
                items.add(f"{names[i]}-{content_type(argument)}-{argument}")
                continue
            k = int(ref.group(1))
            if k != i and k < len(names):  # reading itself or no node: not an argument
                items.add(f"{names[i]}-{_writes(catalog, names[k])}-{names[k]}")
    return items


def content_type(argument: str) -> str:
    text = argument.strip("'")
    for kind, extensions in _CONTENT_TYPES:
        if any("." + ext in text for ext in extensions):
            return kind
    return "text"


def binary_counts(gold: set[_T], pred: set[_T]) -> Counts:
    return Counts(len(gold & pred), len(pred - gold), len(gold - pred))


def is_valid(graph: TaskGraph | None, text: str, catalog: Catalog) -> bool:
    if graph is None or not graph.nodes:
        return False
    try:
        catalog.check(graph, file_names(text))
    except InputError:
        return False
    return True


def score(
    predictions: Sequence[Prediction], examples: Sequence[Example], catalog: Catalog
) -> dict[str, Scores]:
    """The metrics overall and per graph type (single, chain, dag), for one planner's
    answers to ``examples`` (matched by id; an example without an answer counts as no
    graph)."""
    by_id = {p.example_id: p.graph for p in predictions}
    groups = {"overall": list(examples)} | {k: [e for e in examples if e.kind == k] for k in KINDS}
    return {name: _group(group, by_id, catalog) for name, group in groups.items()}


def _group(examples: list[Example], by_id: dict[str, TaskGraph | None], catalog: Catalog) -> Scores:
    nodes, edges, links, arguments = Counts(), Counts(), Counts(), Counts()
    valid = 0
    for e in examples:
        pred = by_id.get(e.id)
        nodes += node_counts(e.graph, pred, catalog)
        edges += binary_counts(resource_links(e.graph), resource_links(pred))
        links += binary_counts(stated_links(e), task_links(pred))
        arguments += binary_counts(argument_items(e.graph, catalog), argument_items(pred, catalog))
        valid += is_valid(pred, e.text, catalog)
    return Scores(
        len(examples),
        nodes.f1,
        edges.f1,
        links.f1,
        arguments.f1,
        valid / len(examples) if examples else 0.0,
    )


def _names(graph: TaskGraph | None) -> set[str]:
    return set() if graph is None else {normal_name(n.task) for n in graph.nodes}


def _writes(catalog: Catalog, name: str) -> str:
    tool = catalog.tools.get(name)
    if tool is None:
        return "other"
    return tool.outputs[0] if tool.outputs else "none"
