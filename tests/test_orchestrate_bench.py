"""``tierwise bench orchestrate`` on the shared TaskBench sample: its report's shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from tierwise.bench.orchestrate import PUBLISHED, PlannerResult, run_orchestrate_bench, score
from tierwise.orchestrate.examples import load_examples
from tierwise.orchestrate.learned import Design
from tierwise.orchestrate.planner import Prediction
from tierwise.orchestrate.selection import BASE_LINKS, Grid

SHARED = Path(os.environ.get("TIERWISE_DATA") or Path(__file__).parents[2] / "shared" / "data")
# One design, so the test takes seconds; the bench itself searches the full grid.
SMALL = Grid(
    designs=(Design("cues+words", 2.0, 0.3),),
    thresholds=(0.15, 0.3),
    link_sets=(BASE_LINKS,),
    decoders=("chain",),
)


@pytest.mark.shared_data
def test_orchestrate_bench_on_the_shared_taskbench_sample(tmp_path: Path) -> None:
    folder = SHARED / "taskbench"
    assert folder.is_dir(), f"no TaskBench sample at {folder}; set TIERWISE_DATA"
    test = load_examples(folder / "test.jsonl")
    # a planner that answers nothing: what another engineer's rows look like when added
    silent = score("silent", [Prediction(e.id, None, 0.5, "cloud", 0.01) for e in test], test)
    assert isinstance(silent, PlannerResult) and silent.groups["overall"].node_f1 == 0.0
    report = run_orchestrate_bench(
        folder, Console(quiet=True), tmp_path, extra=[silent], folds=3, grid=SMALL, llm_limit=2
    )
    names = [p["planner"] for p in report["planners"]]
    assert names == ["learned", "nearest", "learned, first 2", "llm (smollm2), first 2", "silent"]
    llm = report["planners"][3]
    assert llm["groups"]["overall"]["examples"] == 2 and llm["tier"] == "device"
    assert llm["usd_per_plan"] == 0.0 and "SmolLM2-135M-Instruct" in llm["notes"]["model"]
    assert report["data"] == {"train": 345, "test": 142, "folder": str(folder)}
    for p in report["planners"][:2]:
        assert set(p["groups"]) == {"overall", "single", "chain", "dag"}
        assert p["groups"]["overall"]["valid"] == 1.0  # every local plan could run
        assert p["tier"] == "device" and p["usd_per_plan"] == 0.0
        assert p["p50_ms"] <= 50.0
    learned, nearest = report["planners"][0]["groups"], report["planners"][1]["groups"]
    assert learned["overall"]["node_f1"] > nearest["overall"]["node_f1"]
    assert [r["planner"] for r in report["published"]] == [p for p, _, _ in PUBLISHED]
    saved = json.loads((tmp_path / "orchestrate.json").read_text())
    assert saved["chosen"] == report["chosen"]
    md = (tmp_path / "orchestrate.md").read_text()
    assert "gpt-4 (published, all records)" in md and "silent" in md
    assert "first N test records only" in md
    assert (tmp_path / "orchestrate.png").stat().st_size > 10_000


def test_the_cv_table_keeps_minilm_designs_apart() -> None:
    from tierwise.bench.orchestrate_report import cv_rows

    base = {"features": "cues+words", "cue_weight": 3.0, "l2": 0.3, "threshold": 0.2,
            "links": ["adjacent"], "decoder": "chain", "embed": 0.0, "knn": 0.0}  # fmt: skip
    rows = [
        {"stage": "tools", "design": base, "node_f1": 70.0, "edge_f1": None},
        {"stage": "tools", "design": {**base, "knn": 3.0}, "node_f1": 69.0, "edge_f1": None},
    ]
    shown = cv_rows({"cv": rows, "chosen": base})
    assert [r[4] for r in shown] == ["0, 0", "0, 3"]
