"""Training the learned planner: its design chosen by k-fold cross-validation on the
training examples, then refitted on all of them. No other data is seen here.

Two stages, so the grid stays small:

1. **Tools.** For each feature design and regularisation in the grid, out-of-fold tool
   probabilities for every training example; with each threshold they give a node F1
   (TaskBench's). The best design and threshold win.
2. **Structure.** With the winner's out-of-fold tools, each link feature set and decoder
   plans every example with a link model fitted on the other folds; the best edge F1
   (TaskBench's resource links) wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tierwise.errors import InputError
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.embedding import EMBED_MIN_EXAMPLES, Neighbours, embed, minilm_available
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.features import Featurizer
from tierwise.orchestrate.graph import TaskGraph, TaskNode
from tierwise.orchestrate.learned import DECODERS, Design, LearnedModel, choose_tools, decode
from tierwise.orchestrate.links import LinkModel
from tierwise.orchestrate.logistic import Logistic
from tierwise.orchestrate.scoring import Counts, binary_counts, node_counts, resource_links

BASE_LINKS = ("adjacent", "before", "compatible")
CROSS_WEIGHT = 2.0


@dataclass(frozen=True)
class Grid:
    designs: tuple[Design, ...]  # features, cue weight, l2 (threshold and links are set below)
    thresholds: tuple[float, ...]
    link_sets: tuple[tuple[str, ...], ...]
    decoders: tuple[str, ...] = DECODERS


GRID = Grid(
    designs=(
        Design("words", 0.0, 0.3),
        Design("cues", 3.0, 0.3),
        Design("cues+words", 2.0, 0.3),
        Design("cues+words", 3.0, 0.3),
        Design("cues+words", 3.0, 1.0),
        Design("cues+words+cross", 2.0, 0.3),
        Design("cues+words", 3.0, 0.3, knn=3.0),
        Design("cues+words", 3.0, 0.3, embed=3.0, knn=3.0),
    ),
    thresholds=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    link_sets=(
        BASE_LINKS,
        (*BASE_LINKS, "prior"),
        (*BASE_LINKS, "own_file"),
        (*BASE_LINKS, "prior", "own_file"),
    ),
)


@dataclass(frozen=True)
class CVRow:
    stage: str  # "tools" or "structure"
    design: Design
    node_f1: float
    edge_f1: float | None  # structure rows only

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "design": self.design.to_json(),
            "node_f1": self.node_f1,
            "edge_f1": self.edge_f1,
        }


@dataclass(frozen=True)
class _Data:
    examples: Sequence[Example]
    tools: list[str]
    texts: list[str]
    files: list[list[str]]
    labels: np.ndarray  # (examples, tools) 0/1
    folds: list[np.ndarray]


def train_planner(
    examples: Sequence[Example],
    catalog: Catalog,
    k: int = 5,
    grid: Grid = GRID,
    progress: Callable[[str], None] = lambda _: None,
    source: str = "",
) -> LearnedModel:
    data = _prepare(examples, catalog, k)
    if len(examples) < EMBED_MIN_EXAMPLES or not minilm_available():
        cheap = tuple(d for d in grid.designs if not d.uses_minilm)
        grid = replace(grid, designs=cheap or grid.designs)
    rows, design, probs = _choose_tools(data, catalog, grid, progress)
    node_f1 = max(r.node_f1 for r in rows)
    for links in grid.link_sets:
        models = [
            LinkModel.fit(_rest(data, held), catalog, data.tools, links) for held in data.folds
        ]
        for decoder in grid.decoders:
            tried = replace(design, links=links, decoder=decoder)
            edge = _edge_f1(probs, tried, models, data, catalog)
            rows.append(CVRow("structure", tried, node_f1, edge))
            progress(f"links {'+'.join(links)}, {decoder}: CV edge F1 {edge:.1f}")
    structure = [r for r in rows if r.stage == "structure"]
    winner = max(structure, key=lambda r: r.edge_f1 or 0.0)  # the first of equals: grid order
    return _refit(winner.design, data, catalog, rows, source)


def _choose_tools(
    data: _Data, catalog: Catalog, grid: Grid, progress: Callable[[str], None]
) -> tuple[list[CVRow], Design, np.ndarray]:
    """Every design × threshold's CV node F1; the best design (threshold set) and its
    out-of-fold probabilities."""
    rows: list[CVRow] = []
    best: tuple[float, Design, np.ndarray] | None = None
    for design in grid.designs:
        p = _out_of_fold(design, data)
        scored = [(t, _node_f1(p, t, data, catalog)) for t in grid.thresholds]
        rows += [CVRow("tools", replace(design, threshold=t), f1, None) for t, f1 in scored]
        threshold, f1 = max(scored, key=lambda s: s[1])
        progress(f"{_label(design)}: CV node F1 {f1:.1f} at threshold {threshold:g}")
        if best is None or f1 > best[0]:
            best = (f1, replace(design, threshold=threshold), p)
    assert best is not None  # the grid has designs
    return rows, best[1], best[2]


def _prepare(examples: Sequence[Example], catalog: Catalog, k: int) -> _Data:
    if k < 2:
        raise InputError("cross-validation needs at least 2 folds", param="folds")
    if len(examples) < 2 * k:
        raise InputError(f"{len(examples)} examples; need at least {2 * k} to train")
    used = {n.task for e in examples for n in e.graph.nodes}
    tools = [t for t in catalog.names if t in used]
    if not tools:
        raise InputError("no example uses a tool of the catalog; nothing to learn")
    labels = np.array(
        [[float(any(n.task == t for n in e.graph.nodes)) for t in tools] for e in examples],
        np.float32,
    )
    order = np.random.default_rng(0).permutation(len(examples))
    return _Data(
        examples,
        tools,
        [e.text for e in examples],
        [file_names(e.text) for e in examples],
        labels,
        [np.sort(order[i::k]) for i in range(k)],
    )


@dataclass(frozen=True)
class NodeModel:
    """What turns a request into tool probabilities."""

    featurizer: Featurizer
    neighbours: Neighbours | None
    logistic: Logistic

    def predict(
        self, texts: Sequence[str], files: Sequence[Sequence[str]], vectors: np.ndarray | None
    ) -> np.ndarray:
        x = self.featurizer.transform(texts, files)
        if self.neighbours is not None:
            assert vectors is not None  # a MiniLM design is given its vectors
            x = np.concatenate([x, self.neighbours.transform(vectors)], 1)
        return self.logistic.predict(x)


def fit_nodes(
    design: Design,
    texts: Sequence[str],
    files: Sequence[Sequence[str]],
    labels: np.ndarray,
    vectors: np.ndarray | None = None,
) -> NodeModel:
    """``vectors``: the requests' MiniLM vectors, for a design that uses them."""
    cross = CROSS_WEIGHT if "cross" in design.features else 0.0
    featurizer = Featurizer.fit(texts, design.cue_weight, "words" in design.features, cross)
    x = featurizer.transform(texts, files)
    neighbours = None
    if design.uses_minilm:
        vectors = embed(texts) if vectors is None else vectors
        neighbours = Neighbours(vectors, labels.astype(np.float32), design.embed, design.knn)
        own = neighbours.transform(vectors, list(range(len(texts))))  # never its own neighbour
        x = np.concatenate([x, own], 1)
    return NodeModel(featurizer, neighbours, Logistic.fit(x, labels, design.l2))


def _out_of_fold(design: Design, data: _Data) -> np.ndarray:
    p = np.zeros(data.labels.shape, np.float32)
    vectors = embed(data.texts) if design.uses_minilm else None
    for held in data.folds:
        keep = np.setdiff1d(np.arange(len(data.texts)), held)
        model = fit_nodes(
            design,
            [data.texts[i] for i in keep],
            [data.files[i] for i in keep],
            data.labels[keep],
            None if vectors is None else vectors[keep],
        )
        p[held] = model.predict(
            [data.texts[i] for i in held],
            [data.files[i] for i in held],
            None if vectors is None else vectors[held],
        )
    return p


def _node_f1(p: np.ndarray, threshold: float, data: _Data, catalog: Catalog) -> float:
    total = Counts()
    for row, example in enumerate(data.examples):
        names = [data.tools[i] for i in choose_tools(p[row], threshold)]
        total += node_counts(example.graph, TaskGraph(tuple(TaskNode(t) for t in names)), catalog)
    return total.f1 or 0.0


def _edge_f1(
    p: np.ndarray, design: Design, models: list[LinkModel], data: _Data, catalog: Catalog
) -> float:
    total = Counts()
    for held, links in zip(data.folds, models, strict=True):
        for row in held:
            e = data.examples[row]
            graph = decode(p[row], e.text, data.files[row], data.tools, design, links, catalog)
            total += binary_counts(resource_links(e.graph), resource_links(graph))
    return total.f1 or 0.0


def _rest(data: _Data, held: np.ndarray) -> list[Example]:
    skip = set(held.tolist())
    return [e for i, e in enumerate(data.examples) if i not in skip]


def _refit(
    design: Design, data: _Data, catalog: Catalog, rows: list[CVRow], source: str
) -> LearnedModel:
    nodes = fit_nodes(design, data.texts, data.files, data.labels)
    links = LinkModel.fit(data.examples, catalog, data.tools, design.links)
    info = {
        "trained_on": source,
        "examples": len(data.examples),
        "folds": len(data.folds),
        "cv": [r.to_json() for r in rows],
    }
    return LearnedModel(
        data.tools, nodes.featurizer, nodes.logistic, links, design, info, nodes.neighbours
    )


def _label(design: Design) -> str:
    minilm = f", MiniLM {design.embed:g}, knn {design.knn:g}" if design.uses_minilm else ""
    return f"{design.features} (cue weight {design.cue_weight:g}, l2 {design.l2:g}{minilm})"
