"""The learned planner: a request's tools by logistic regression, their order and links by
a learned pair score, their arguments from the request. numpy only, milliseconds a plan.

1. **Which tools.** Features (:mod:`~tierwise.orchestrate.features`) → one logistic
   regression per catalog tool; every tool whose probability reaches the threshold is in
   the plan (at least the likeliest one, at most :data:`~tierwise.orchestrate.links.MAX_TOOLS`).
2. **Order and links.** :class:`~tierwise.orchestrate.links.LinkModel` scores each ordered
   pair; the tools run in the order of the best-scoring path, linked as the design says.
3. **Arguments.** :func:`~tierwise.orchestrate.arguments.build_graph`.

Which features, how much regularisation, the threshold and the link design are chosen by
cross-validation on the training examples only (:mod:`~tierwise.orchestrate.selection`).
A trained planner is one ``.npz`` (arrays + JSON header, no pickle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.arrays_file import read_arrays, write_arrays
from tierwise.errors import InputError
from tierwise.orchestrate.arguments import build_graph
from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.embedding import Neighbours, embed
from tierwise.orchestrate.features import Featurizer
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.links import MAX_TOOLS, LinkModel, best_path, parents
from tierwise.orchestrate.logistic import Logistic
from tierwise.orchestrate.planner import Planned, Planner, PlanRequest

FORMAT = "tierwise-planner/1"
DECODERS = ("chain", "breaks", "breaks+fan-in")


@dataclass(frozen=True)
class Design:
    """One way to build the planner: what cross-validation chooses among."""

    features: str  # "words", "cues", "cues+words" or "cues+words+cross"
    cue_weight: float
    l2: float
    threshold: float = 0.5
    links: tuple[str, ...] = ("adjacent", "before", "compatible")
    decoder: str = "breaks"
    embed: float = 0.0  # weight of the request's MiniLM vector (0: not used)
    knn: float = 0.0  # weight of the nearest training requests' tools (0: not used)

    @property
    def uses_minilm(self) -> bool:
        return self.embed > 0 or self.knn > 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "links": list(self.links)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Design:
        return cls(**{**data, "links": tuple(data["links"])})


@dataclass(frozen=True)
class LearnedModel:
    tools: list[str]  # the label space: catalog tools the training graphs use
    featurizer: Featurizer
    nodes: Logistic
    links: LinkModel
    design: Design
    info: dict[str, Any]  # what it was trained on, and the cross-validation table
    neighbours: Neighbours | None = None  # the MiniLM feature groups, when the design has them

    def graph(self, text: str, files: list[str], catalog: Catalog) -> TaskGraph:
        x = self.featurizer.transform([text], [files])
        if self.neighbours is not None:
            x = np.concatenate([x, self.neighbours.transform(embed([text], remember=False))], 1)
        p = self.nodes.predict(x)[0]
        return decode(p, text, files, self.tools, self.design, self.links, catalog)

    def save(self, path: Path) -> None:
        arrays = {"nodes.weights": self.nodes.weights, "nodes.bias": self.nodes.bias}
        arrays.update(self.links.to_arrays())
        if self.neighbours is not None:
            arrays.update(self.neighbours.to_arrays())
        meta = {
            "format": FORMAT,
            "tools": self.tools,
            "featurizer": self.featurizer.to_json(),
            "design": self.design.to_json(),
            "link_features": list(self.links.features),
            "info": self.info,
            "neighbours": None if self.neighbours is None else self.neighbours.to_json(),
        }
        write_arrays(path, arrays, meta)

    @classmethod
    def load(cls, path: Path) -> LearnedModel:
        try:
            arrays, meta = read_arrays(path, FORMAT, "train one with `tierwise planner train`")
            return cls(
                list(meta["tools"]),
                Featurizer.from_json(meta["featurizer"]),
                Logistic(arrays["nodes.weights"], arrays["nodes.bias"]),
                LinkModel.from_arrays(arrays, list(meta["link_features"])),
                Design.from_json(meta["design"]),
                dict(meta.get("info") or {}),
                _neighbours(arrays, meta.get("neighbours")),
            )
        except InputError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a trained planner ({FORMAT}): {exc}") from exc


def _neighbours(arrays: dict[str, np.ndarray], meta: Any) -> Neighbours | None:
    return None if meta is None else Neighbours.load(arrays, meta)


def choose_tools(p: np.ndarray, threshold: float) -> list[int]:
    """The tools at or above the threshold, likeliest first (at least one, at most
    MAX_TOOLS)."""
    order = [int(i) for i in np.argsort(-p, kind="stable")]
    chosen = [i for i in order if p[i] >= threshold][:MAX_TOOLS]
    return chosen or order[:1]


def decode(
    p: np.ndarray,
    text: str,
    files: list[str],
    tools: list[str],
    design: Design,
    links: LinkModel,
    catalog: Catalog,
) -> TaskGraph:
    """The graph for one request from its tool probabilities ``p`` (one per ``tools``)."""
    chosen = choose_tools(p, design.threshold)
    scores = links.scores(text, files, chosen, tools, catalog)
    force = design.decoder == "chain"
    path = best_path(scores, force)
    feeds = parents(path, scores, force, design.decoder.endswith("fan-in"))
    position = {k: n for n, k in enumerate(path)}
    names = [tools[chosen[k]] for k in path]
    by_position = {position[k]: sorted(position[a] for a in feeds[k]) for k in path}
    return build_graph(names, by_position, text, files, catalog)


class LearnedPlanner(Planner):
    """Plans where it runs (inside the gateway, so on the gateway's tier), at $0."""

    name = "learned"

    def __init__(self, model: LearnedModel, catalog: Catalog | None = None) -> None:
        self.model = model
        self.catalog = catalog or Catalog.default()

    async def plan(self, request: PlanRequest) -> Planned:
        return self.plan_now(request)

    def plan_now(self, request: PlanRequest) -> Planned:
        """Only attached files are arguments: a file the text names but nobody attached
        would fail the gateway's check."""
        graph = self.model.graph(request.text, list(request.files), self.catalog)
        return Planned(graph, self.name, usage={"usd": 0.0})

    @classmethod
    def load(cls, path: Path, catalog: Catalog | None = None) -> LearnedPlanner:
        return cls(LearnedModel.load(path), catalog)
