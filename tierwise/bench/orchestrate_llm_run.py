"""Running the LLM planner bench: the whole test split in this process, then a sample of
it on each tier of a real local cluster, through its gateway with the plan pinned.

In this process SmolLM2 runs on this machine's CPU at full speed (the numbers for F1).
Through the gateway each tier's node answers: the device node is EMULATED at a quarter of
this machine's speed, and the edge and cloud nodes are reached over the emulated links,
so those latencies are the planning step as a user of that cluster would wait for it.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.bench.orchestrate_llm import (
    SUITE,
    BenchRequest,
    Predicted,
    RecordedAsk,
    load_requests,
    predict,
    prediction_json,
)
from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.config import LlamaCppModel, default_spec
from tierwise.errors import UpstreamError
from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf
from tierwise.orchestrate.asking import AskSettings, HttpAsk, LocalAsk, model_budget
from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import Example, load_examples
from tierwise.orchestrate.llm import LLMPlanner, LLMSettings
from tierwise.orchestrate.prompt import PromptBudget
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

MODEL = "smollm2"
ATTEMPT_TIMEOUT_S = 600.0
Progress = Callable[[str], None]


def load_smollm2(threads: int | None) -> LlamaCppChat:
    spec = default_spec().models[MODEL]
    assert isinstance(spec, LlamaCppModel)
    return LlamaCppChat(
        MODEL, resolve_gguf(spec.gguf), spec.n_ctx, threads, spec.max_tokens_default
    )


def in_process(
    model: LlamaCppChat, train: list[Example], requests: list[BenchRequest]
) -> list[Predicted]:
    recorded = RecordedAsk(LocalAsk(model))
    planner = LLMPlanner(Catalog.default(), train, recorded, budget=model_budget(model))
    return asyncio.run(predict(planner, recorded, requests, "device"))


def on_tiers(
    budget: PromptBudget, train: list[Example], requests: list[BenchRequest], progress: Progress
) -> dict[str, dict[str, Any]]:
    """Each tier's node plans ``requests`` through the gateway of a fresh default cluster."""
    spec = default_spec().with_free_ports()
    assert spec.gateway is not None
    # A planning prompt is 1000-1700 tokens: on the EMULATED device (a quarter speed) an
    # answer takes longer than the gateway's default 30 s per attempt.
    gateway = spec.gateway.model_copy(update={"attempt_timeout": ATTEMPT_TIMEOUT_S})
    spec = spec.model_copy(update={"variants_dir": None, "gateway": gateway})
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        cluster = LocalCluster(spec, Path(tmp))
        progress("starting the cluster...")
        state = cluster.start()
        try:
            key = read_api_key(state.state_dir)
            for node in spec.nodes:
                if MODEL not in node.models:
                    continue
                plan = f"chat@{node.name}/{MODEL}"
                progress(f"planning {len(requests)} requests on {plan}...")
                rows = asyncio.run(_through(state.gateway_url, key, plan, budget, train, requests))
                out[node.tier] = {"plan": plan, "rows": rows}
        finally:
            cluster.stop()
    return out


async def _through(
    url: str,
    key: str,
    plan: str,
    budget: PromptBudget,
    train: list[Example],
    requests: list[BenchRequest],
) -> list[Predicted]:
    ask = HttpAsk(url, key, MODEL, tierwise={"plan": plan})
    recorded = RecordedAsk(ask)
    planner = LLMPlanner(Catalog.default(), train, recorded, budget=budget)
    try:
        await _ready(ask)
        return await predict(planner, recorded, requests, "device")
    finally:
        await ask.aclose()


async def _ready(ask: HttpAsk, tries: int = 60) -> None:
    """One small pinned ask until it is answered: the gateway may not have probed the
    plan's link yet (a plan is not run before), and the node's first answer warms it."""
    probe = [{"role": "user", "content": "Say OK."}]
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    for attempt in range(tries):
        try:
            await ask(probe, schema)
            return
        except UpstreamError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(1.0)


def run_orchestrate_llm_bench(
    data_dir: Path,
    out_dir: Path,
    sample: int = 10,
    limit: int | None = None,
    threads: int | None = 2,
    progress: Progress = print,
) -> dict[str, Any]:
    """Predictions for TaskBench's test split (``limit``: the first few only), and the
    first ``sample`` requests planned on each tier; written to ``orchestrate-llm.json``."""
    train = load_examples(data_dir / "train.jsonl")
    requests = load_requests(data_dir / "test.jsonl", limit)
    model = load_smollm2(threads)
    try:
        progress(f"planning {len(requests)} requests in this process...")
        whole = in_process(model, train, requests)
        tiers = on_tiers(model_budget(model), train, requests[:sample], progress) if sample else {}
    finally:
        model.close()
    data = {
        "suite": SUITE,
        "environment": environment(),
        "model": f"{MODEL} (SmolLM2-135M-Instruct, Q4_1 GGUF, llama.cpp)",
        "settings": {"llm": asdict(LLMSettings()), "ask": asdict(AskSettings())},
        "in_process": {"threads": threads},
        "predictions": [prediction_json(p) for p in whole],
        "tiers": {
            tier: {"plan": t["plan"], "predictions": [prediction_json(p) for p in t["rows"]]}
            for tier, t in tiers.items()
        },
    }
    write_results(out_dir, SUITE, data, _markdown(data))
    return data


def _markdown(data: dict[str, Any]) -> str:
    runs = {"in process": data["predictions"]}
    runs |= {f"{tier} ({t['plan']})": t["predictions"] for tier, t in data["tiers"].items()}
    rows = []
    for name, preds in runs.items():
        seconds = [p["seconds"] for p in preds]
        refused = sum(p["graph"] is None for p in preds)
        retried = sum(p["tries"] > 1 for p in preds)
        rows.append(
            [
                name,
                len(preds),
                refused,
                retried,
                f"{statistics.median(seconds):.2f}",
                f"{float(np.percentile(seconds, 90)):.2f}",
            ]
        )
    table = markdown_table(["run", "requests", "refused", "retried", "median s", "p90 s"], rows)
    return (
        f"# LLM planner on TaskBench ({data['model']})\n\n"
        "Raw predictions for `tierwise bench orchestrate` to score; planning latency "
        "per request. The device node is EMULATED at a quarter of this machine's speed.\n\n"
        f"{table}\n"
    )
