"""The LLM planner on TaskBench: one prediction per test request, with its latency.

Examples are retrieved from the training split only; the test requests are read for
their id and text alone (the planner never sees a gold graph). A request the planner
refuses (its graph broken twice) is a prediction with no graph. Scoring is not done here:
``tierwise bench orchestrate`` scores these predictions with TaskBench's metrics, reading
them back with :func:`read_predictions`.

Where planning runs is the :data:`AskChat`'s business: in this process for the whole test
split, and through a running gateway with the plan pinned to one tier for latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierwise.errors import InputError, TierwiseError
from tierwise.orchestrate.catalog import file_names
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.llm import LLMPlanner
from tierwise.orchestrate.planner import AskChat, PlanRequest, Prediction

SUITE = "orchestrate-llm"


@dataclass(frozen=True)
class BenchRequest:
    """A test record as a planner may see it: its id, its text and the files it names."""

    id: str
    request: PlanRequest


@dataclass(frozen=True)
class Predicted:
    """A prediction, and why the planner refused when it did."""

    prediction: Prediction
    error: str | None = None


def load_requests(path: Path, limit: int | None = None) -> list[BenchRequest]:
    """``id`` and ``instruction`` of each line of a TaskBench JSON-lines file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file of TaskBench requests")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            text = str(raw["instruction"])
            out.append(BenchRequest(str(raw["id"]), PlanRequest(text, tuple(file_names(text)))))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: line {number}: {exc}") from exc
    return out[:limit]


class RecordedAsk:
    """An AskChat that keeps the usage record of each ask: the planner keeps none for a
    request it refuses, and the bench still wants its tiers, cost and tries."""

    def __init__(self, ask: AskChat) -> None:
        self._ask = ask
        self.asks: list[dict[str, Any]] = []

    async def __call__(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        text, usage = await self._ask(messages, schema)
        self.asks.append(usage)
        return text, usage


async def predict(
    planner: LLMPlanner, recorded: RecordedAsk, requests: Sequence[BenchRequest], tier: str
) -> list[Predicted]:
    """Plan each request in turn (``planner`` asks through ``recorded``). ``tier``: where
    planning runs when an answer does not say."""
    out = []
    for item in requests:
        recorded.asks = []
        started = time.perf_counter()
        graph: TaskGraph | None = None
        error = None
        try:
            graph = (await planner.plan(item.request)).graph
        except TierwiseError as exc:  # refused (400), or the model could not be asked
            error = f"{exc.code}: {exc.message}"
        seconds = time.perf_counter() - started
        asks = recorded.asks
        where = next((a["tier"] for a in reversed(asks) if a.get("tier")), tier)
        usd = sum(float(a.get("usd", 0.0)) for a in asks)
        out.append(Predicted(Prediction(item.id, graph, seconds, where, usd, len(asks)), error))
    return out


def prediction_json(p: Predicted) -> dict[str, Any]:
    pred = p.prediction
    return {
        "example_id": pred.example_id,
        "graph": None if pred.graph is None else pred.graph.to_taskbench(),
        "seconds": round(pred.seconds, 4),
        "tier": pred.tier,
        "usd": pred.usd,
        "tries": pred.tries,
        "error": p.error,
    }


def read_predictions(path: Path, run: str | None = None) -> list[Prediction]:
    """The predictions of ``path`` (this bench's JSON): the whole test split, or one
    tier's latency sample (``run``: ``device``, ``edge`` or ``cloud``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["predictions"] if run is None else data["tiers"][run]["predictions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not an {SUITE} result ({exc!r})") from exc
    return [
        Prediction(
            r["example_id"],
            None if r["graph"] is None else TaskGraph.from_taskbench(r["graph"]),
            float(r["seconds"]),
            str(r["tier"]),
            float(r["usd"]),
            int(r["tries"]),
        )
        for r in rows
    ]
