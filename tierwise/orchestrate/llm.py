"""The LLM planner: a chat model writes the task graph, under a grammar that allows only
graphs over the catalog.

One plan is one or two asks. The prompt shows the tools, the ``k`` solved examples most
like the request (fewer when the model's window would not hold them) and the request.
The answer is decoded under the graph's JSON schema (:mod:`.graph_schema`), then read and
checked against the catalog and the attached files. A graph that is broken anyway (a
``<node-i>`` naming no node, a file not attached, a cycle, an answer cut off) is asked
for once more with the problem named; broken twice, the request is refused with both
problems named.

The planner asks only through an :data:`AskChat`, so where planning runs (this process,
a node, or the gateway under the user's policy) is the caller's choice: the request's own
``ask`` when it brings one (the gateway binds one to each run's policy), else the one the
planner was made with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tierwise.errors import ConfigError, InputError
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.graph_schema import GraphBounds, graph_schema
from tierwise.orchestrate.planner import AskChat, Planned, Planner, PlanRequest
from tierwise.orchestrate.prompt import (
    DEFAULT_BUDGET,
    Message,
    PromptBudget,
    example_turns,
    follow_up,
    request_message,
    system_message,
)
from tierwise.orchestrate.retrieval import Embed, Retriever


@dataclass(frozen=True)
class LLMSettings:
    k: int = 3  # solved examples shown, most similar first; fewer if the window is short
    bounds: GraphBounds = field(default_factory=GraphBounds)


class LLMPlanner(Planner):
    name = "llm"

    def __init__(
        self,
        catalog: Catalog,
        examples: Sequence[Example],
        ask: AskChat | None = None,
        *,
        budget: PromptBudget = DEFAULT_BUDGET,
        settings: LLMSettings | None = None,
        embed: Embed | None = None,
    ) -> None:
        """``examples``: solved requests to retrieve from; only those whose graph runs
        over ``catalog`` are shown (a wrong example teaches a wrong graph). ``ask``: the
        chat model asked when a request brings none of its own."""
        self.catalog = catalog
        self.settings = settings or LLMSettings()
        self.schema = graph_schema(catalog, self.settings.bounds)
        self._ask = ask
        self._budget = budget
        self._system = system_message(catalog)
        shown = [e for e in examples if _runs(e, catalog)]
        self._retriever = Retriever(shown, embed) if shown else None

    async def plan(self, request: PlanRequest) -> Planned:
        ask = request.ask or self._ask
        if ask is None:
            raise ConfigError(
                "the llm planner has no chat model to ask: the cluster serves none, or the "
                "planner was made without one (gateway.runs.planner: learned plans without)"
            )
        examples = self.similar(request)
        messages = self.messages(request, examples)
        answer, usage = await ask(messages, self.schema)
        try:
            return Planned(self.read(answer, request), self.name, 1, total_usage([usage]))
        except InputError as exc:
            first = exc.message
        try:
            retry = self.messages(request, examples, follow_up(answer, first))
        except InputError as exc:
            raise InputError(
                f"the planning model's graph was broken ({first}), and {exc.message}",
                param="plan",
            ) from exc
        again, usage2 = await ask(retry, self.schema)
        try:
            graph = self.read(again, request)
        except InputError as exc:
            raise InputError(
                f"the planning model's graph was broken twice: first {first}; then {exc.message}",
                param="plan",
            ) from exc
        return Planned(graph, self.name, 2, total_usage([usage, usage2]))

    def similar(self, request: PlanRequest) -> list[Example]:
        if self._retriever is None:
            return []
        return self._retriever.nearest(request.text, self.settings.k)

    def messages(
        self, request: PlanRequest, examples: list[Example], retry: list[Message] | None = None
    ) -> list[Message]:
        """The conversation for ``request``, with as many of ``examples`` (most similar
        first) as the budget holds; the most similar stands next to the request."""
        for n in range(len(examples), -1, -1):
            turns = [t for e in reversed(examples[:n]) for t in example_turns(e, _files(e))]
            messages = [self._system, *turns, request_message(request), *(retry or [])]
            tokens = self._budget.count(messages)
            if tokens <= self._budget.limit:
                return messages
        raise InputError(
            f"the request is too long to plan: its prompt takes {tokens} tokens, and the "
            f"planning model's window leaves {self._budget.limit} for a prompt",
            param="messages",
        )

    def read(self, answer: str, request: PlanRequest) -> TaskGraph:
        """The answer as a graph that runs over the catalog, or an InputError naming why not."""
        try:
            # strict=False: the grammar lets a string hold a raw newline, as models write
            data = json.loads(answer, strict=False)
        except ValueError as exc:
            raise InputError(f"the answer is not whole JSON ({exc}); was it cut off?") from exc
        graph = TaskGraph.from_taskbench(data)
        self.catalog.check(graph, list(request.files))
        return graph


def total_usage(asks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the asks of one plan took together, and each ask's own record."""
    return {
        # where the graph that is used (the last ask's answer) was written
        "tier": asks[-1].get("tier") if asks else None,
        "prompt_tokens": sum(int(u.get("prompt_tokens", 0)) for u in asks),
        "completion_tokens": sum(int(u.get("completion_tokens", 0)) for u in asks),
        "usd": sum(float(u.get("usd", 0.0)) for u in asks),
        "tiers": [u.get("tier") for u in asks],
        "asks": asks,
    }


def _files(example: Example) -> list[str]:
    return file_names(example.text)


def _runs(example: Example, catalog: Catalog) -> bool:
    try:
        catalog.check(example.graph, _files(example))
    except InputError:
        return False
    return True
