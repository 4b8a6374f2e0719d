"""``tierwise bench orchestrate``: planners of plain-language requests on TaskBench.

Trains the learned planner on ``train.jsonl`` only (its design chosen by cross-validation
there) and the nearest-example floor on the same records, plans every ``test.jsonl``
request once with each, and scores them with TaskBench's metrics
(:mod:`tierwise.orchestrate.scoring`), overall and per graph type. TaskBench's published
rows are printed beside ours, marked as published: they are on all of its records, ours
on the aligned test sample. Writes ``orchestrate.json``, ``orchestrate.md`` and
``orchestrate.png``.

The LLM planner (SmolLM2 under the graph's grammar, :mod:`.orchestrate_llm`) is slow on
a CPU, so it plans the first ``llm_limit`` test records only, and the learned planner is
scored again on the same records beside it; both rows say so.

Other planners join through :func:`score` (their ``list[Prediction]``) and the
``extra`` argument of :func:`run_orchestrate_bench`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tierwise.bench.orchestrate_report import markdown, plot, rich_tables
from tierwise.bench.report import environment, write_results
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.examples import Example, load_examples
from tierwise.orchestrate.planner import Planner, PlanRequest, Prediction
from tierwise.orchestrate.scoring import Scores
from tierwise.orchestrate.scoring import score as score_groups
from tierwise.orchestrate.selection import GRID, Grid, train_planner

#: TaskBench's README, huggingface-tools domain, all records (not our test sample).
PUBLISHED = (("gpt-4", 81.54, 54.70), ("llama-2-7b-chat", 27.30, 0.74))


@dataclass(frozen=True)
class PlannerResult:
    """One planner's test-set numbers."""

    planner: str
    tier: str  # where it planned: "device" for the local planners
    groups: dict[str, Scores]  # "overall", "single", "chain", "dag"
    p50_ms: float
    p95_ms: float
    usd_per_plan: float  # modelled (price tables), 0 for a local planner
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "groups"},
            "groups": {name: asdict(s) for name, s in self.groups.items()},
        }


def score(
    planner: str,
    predictions: Sequence[Prediction],
    examples: Sequence[Example],
    catalog: Catalog | None = None,
    notes: dict[str, Any] | None = None,
) -> PlannerResult:
    """TaskBench's metrics for one planner's predictions on ``examples``, with its
    latency (p50/p95 of ``Prediction.seconds``), tier and modelled $ per plan."""
    groups = score_groups(predictions, examples, catalog or Catalog.default())
    ms = sorted(p.seconds * 1e3 for p in predictions) or [0.0]
    tiers = sorted({p.tier for p in predictions}) or ["-"]
    usd = statistics.fmean(p.usd for p in predictions) if predictions else 0.0
    return PlannerResult(
        planner, "/".join(tiers), groups, _percentile(ms, 50), _percentile(ms, 95), usd,
        notes or {},
    )  # fmt: skip


def predict(planner: Planner, examples: Sequence[Example], tier: str) -> list[Prediction]:
    """Plan every example once, timing each plan where it runs."""

    async def run() -> list[Prediction]:
        out = []
        for e in examples:
            request = PlanRequest(e.text, tuple(file_names(e.text)))
            started = time.perf_counter()
            planned = await planner.plan(request)
            seconds = time.perf_counter() - started
            usd = float(planned.usage.get("usd", 0.0))
            out.append(Prediction(e.id, planned.graph, seconds, tier, usd, planned.tries))
        return out

    return asyncio.run(run())


def run_orchestrate_bench(
    data: Path,
    console: Console,
    out: Path,
    extra: Sequence[PlannerResult] = (),
    folds: int = 5,
    grid: Grid = GRID,
    llm_limit: int = 40,
) -> dict[str, Any]:
    """Every planner's rows; ``llm_limit``: test records the LLM planner plans (0: none)."""
    from tierwise.orchestrate.learned import LearnedPlanner
    from tierwise.orchestrate.nearest import NearestPlanner

    train = load_examples(data / "train.jsonl")
    test = load_examples(data / "test.jsonl")
    catalog = Catalog.default()
    started = time.perf_counter()
    model = train_planner(train, catalog, folds, grid, console.log, source=str(data))
    train_s = time.perf_counter() - started
    learned = LearnedPlanner(model, catalog)
    predict(learned, test[:5], "device")  # warm: first calls compile regexes, fill caches
    results = [
        score("learned", predict(learned, test, "device"), test, catalog,
              {"design": model.design.to_json(), "train_seconds": round(train_s, 1)}),
        score("nearest", predict(NearestPlanner(train, catalog), test, "device"), test, catalog),
        *_subset_rows(learned, train, test[:llm_limit], catalog, console),
        *extra,
    ]  # fmt: skip
    report = {
        "environment": environment(),
        "data": {"train": len(train), "test": len(test), "folder": str(data)},
        "planners": [r.to_json() for r in results],
        "published": [{"planner": p, "node_f1": n, "edge_f1": e} for p, n, e in PUBLISHED],
        "cv": model.info["cv"],
        "chosen": model.design.to_json(),
    }
    write_results(out, "orchestrate", report, markdown(report))
    plot(report, out / "orchestrate.png")
    for table in rich_tables(report):
        console.print(table)
    console.print(f"wrote {out / 'orchestrate.md'}, orchestrate.json and orchestrate.png")
    return report


def _subset_rows(
    learned: Planner,
    train: Sequence[Example],
    subset: Sequence[Example],
    catalog: Catalog,
    console: Console,
) -> list[PlannerResult]:
    """The LLM planner on ``subset``, and the learned planner on the same records."""
    from tierwise.bench.orchestrate_llm import MODEL, llm_predictions

    if not subset:
        return []
    n = len(subset)
    console.log(f"the llm planner ({MODEL}) plans the first {n} test records...")
    predictions, notes = llm_predictions(train, subset, catalog)
    return [
        score(f"learned, first {n}", predict(learned, subset, "device"), subset, catalog),
        score(f"llm ({MODEL}), first {n}", predictions, subset, catalog, notes),
    ]


def _percentile(ms: list[float], q: float) -> float:
    return float(np.percentile(ms, q))
