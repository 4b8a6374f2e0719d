"""The floor: copy the graph of the most similar training request (TF-IDF cosine).

The copied graph keeps its tools (those the catalog knows) and who feeds whom; its
arguments are made again from the new request (:func:`~tierwise.orchestrate.arguments.
build_graph`), so every plan names only the files attached to it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from tierwise.errors import InputError
from tierwise.orchestrate.arguments import build_graph
from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.planner import Planned, Planner, PlanRequest

_WORD = re.compile(r"[a-z0-9]+")


class TfIdf:
    """Unit-length TF-IDF vectors over the words of the training requests."""

    def __init__(self, texts: Sequence[str]) -> None:
        docs = [Counter(_WORD.findall(t.lower())) for t in texts]
        df: Counter[str] = Counter(w for d in docs for w in d)
        self.index = {w: i for i, w in enumerate(sorted(df))}
        self.idf = np.array(
            [math.log((1 + len(docs)) / (1 + df[w])) + 1.0 for w in sorted(df)], np.float32
        )
        self.matrix = np.stack([self.vector(d) for d in docs]) if docs else np.zeros((0, 0))

    def vector(self, words: Counter[str]) -> np.ndarray:
        out = np.zeros(len(self.index), np.float32)
        for w, n in words.items():
            i = self.index.get(w)
            if i is not None:
                out[i] = n * self.idf[i]
        norm = float(np.linalg.norm(out))
        return out / norm if norm else out

    def nearest(self, text: str) -> int:
        sims = self.matrix @ self.vector(Counter(_WORD.findall(text.lower())))
        return int(np.argmax(sims))


class NearestPlanner(Planner):
    name = "nearest"

    def __init__(self, examples: Sequence[Example], catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog.default()
        self.examples = [e for e in examples if _known(e.graph, self.catalog)]
        if not self.examples:
            raise InputError("no example uses a tool of the catalog; nothing to copy")
        self.tfidf = TfIdf([e.text for e in self.examples])

    async def plan(self, request: PlanRequest) -> Planned:
        return self.plan_now(request)

    def plan_now(self, request: PlanRequest) -> Planned:
        example = self.examples[self.tfidf.nearest(request.text)]
        graph = copy_graph(example.graph, request.text, list(request.files), self.catalog)
        return Planned(graph, self.name, usage={"usd": 0.0, "copied": example.id})


def copy_graph(graph: TaskGraph, text: str, files: list[str], catalog: Catalog) -> TaskGraph:
    """``graph``'s catalog tools in running order, fed as before, with new arguments."""
    try:
        order = graph.order()
    except InputError:  # a cycle in the data: keep the listed order
        order = list(range(len(graph.nodes)))
    keep = [i for i in order if graph.nodes[i].task in catalog.tools]
    position = {node: n for n, node in enumerate(keep)}
    deps = graph.dependencies()
    feeds = {
        position[i]: sorted(position[d] for d in deps[i] if d in position and position[d] < n)
        for n, i in enumerate(keep)
    }
    return build_graph([graph.nodes[i].task for i in keep], feeds, text, files, catalog)


def _known(graph: TaskGraph, catalog: Catalog) -> bool:
    return any(n.task in catalog.tools for n in graph.nodes)
