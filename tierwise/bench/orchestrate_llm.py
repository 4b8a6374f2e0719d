"""The LLM planner's rows of ``tierwise bench orchestrate``: SmolLM2 plans test requests.

SmolLM2-135M-Instruct (the default cluster's chat model, Q4_1 GGUF) runs in this process
through llama.cpp, under the graph's grammar, as the device node would run it. Solved
examples are retrieved from the training split only; the planner sees a test record's
text and the file names in it, never its graph. A request it refuses (its graph broken
twice) or cannot plan counts as no graph, so it lowers the F1s and the valid share.

SmolLM2 takes seconds a plan on this machine's CPU, so the bench plans the first ``N``
test records (``--llm-limit``) and scores the learned planner on the same records for a
like-for-like row. llama.cpp runs on one thread: on a shared 2-core machine two threads
were up to ten times slower whenever another process was busy (each token waits for
both), and one thread was steady.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tierwise.config import LlamaCppModel, default_spec
from tierwise.errors import TierwiseError
from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf
from tierwise.orchestrate.asking import AskSettings, LocalAsk, model_budget
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.llm import LLMPlanner, LLMSettings
from tierwise.orchestrate.planner import AskChat, PlanRequest, Prediction

MODEL = "smollm2"
THREADS = 1


def load_smollm2(threads: int = THREADS) -> LlamaCppChat:
    """The default spec's SmolLM2, as its nodes load it."""
    spec = default_spec().models[MODEL]
    assert isinstance(spec, LlamaCppModel)
    return LlamaCppChat(
        MODEL, resolve_gguf(spec.gguf), spec.n_ctx, threads, spec.max_tokens_default
    )


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
    planner: LLMPlanner, recorded: RecordedAsk, examples: Sequence[Example], tier: str
) -> tuple[list[Prediction], list[str]]:
    """Plan each example's request in turn (``planner`` asks through ``recorded``), and
    why each refused one was refused. ``tier``: where planning ran when no ask says."""
    out, refusals = [], []
    for e in examples:
        recorded.asks = []
        started = time.perf_counter()
        graph = None
        try:
            graph = (await planner.plan(PlanRequest(e.text, tuple(file_names(e.text))))).graph
        except TierwiseError as exc:  # refused (400), or the model could not be asked
            refusals.append(f"{e.id}: {exc.code}: {exc.message}")
        seconds = time.perf_counter() - started
        asks = recorded.asks
        where = next((a["tier"] for a in reversed(asks) if a.get("tier")), tier)
        usd = sum(float(a.get("usd", 0.0)) for a in asks)
        out.append(Prediction(e.id, graph, seconds, where, usd, max(len(asks), 1)))
    return out, refusals


def llm_predictions(
    train: Sequence[Example], test: Sequence[Example], catalog: Catalog
) -> tuple[list[Prediction], dict[str, Any]]:
    """SmolLM2's plans for ``test``, with examples retrieved from ``train``, and notes for
    the report (model, settings, retries, refusals)."""
    model = load_smollm2()
    try:
        recorded = RecordedAsk(LocalAsk(model))
        planner = LLMPlanner(catalog, train, recorded, budget=model_budget(model))
        predictions, refusals = asyncio.run(predict(planner, recorded, test, "device"))
    finally:
        model.close()
    notes = {
        "model": f"{MODEL} (SmolLM2-135M-Instruct, Q4_1 GGUF, llama.cpp, {THREADS} thread, "
        "in this process: the device tier's model at this CPU's speed, not emulated)",
        "settings": {"k": LLMSettings().k, **asdict(AskSettings())},
        "retried": sum(p.tries > 1 for p in predictions),
        "refused": refusals,
    }
    return predictions, notes
