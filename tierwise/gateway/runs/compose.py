"""The run's final answer, from its steps' outputs.

One text output at the end of the graph is the answer as it is. Several are written into
one answer by a chat model where the run may still ask one (a chat model is served, and
the run's budget is not spent); otherwise, and when that fails, by a plain template. What
could not be done is always said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tierwise.errors import TierwiseError
from tierwise.gateway.runs.executor import StepResult
from tierwise.gateway.runs.tools import StepContext, ToolRunner
from tierwise.gateway.runs.values import text_value
from tierwise.orchestrate.graph import TaskGraph

How = Literal["last step", "chat", "template"]


@dataclass(frozen=True)
class Answer:
    text: str
    how: How
    ext: dict[str, Any] | None = None  # the composing chat request's `tierwise` fields
    missing: tuple[str, ...] = ()


async def compose(
    graph: TaskGraph,
    results: list[StepResult],
    ctx: StepContext,
    writer: ToolRunner | None,
    may_ask: bool,
) -> Answer:
    """The answer to the run; ``writer`` is a chat tool (None: no chat model is served)."""
    missing = tuple(_missing(r) for r in results if r.status != "ok")
    ends = [results[i] for i in _ends(graph) if results[i].status == "ok"]
    texts = [r for r in ends if r.value is not None and r.value.kind in ("text", "label")]
    if len(texts) == 1 and len(ends) == 1 and not missing:
        assert texts[0].value is not None
        return Answer(texts[0].value.as_text(), "last step", missing=missing)
    facts = [_fact(r) for r in results if r.status == "ok"]
    if writer is not None and may_ask and facts:
        prompt = "Results of the steps:\n" + "\n".join(facts)
        if missing:
            prompt += "\nNot done: " + "; ".join(missing)
        try:
            output = await writer.run([text_value(prompt)], ctx)
        except TierwiseError:
            pass  # the template below still answers
        else:
            return Answer(output.value.as_text(), "chat", output.ext, missing)
    return Answer(_template(facts, missing), "template", missing=missing)


def _ends(graph: TaskGraph) -> list[int]:
    """The nodes no other node reads or follows: where the graph's results are."""
    feeds = {d for deps in graph.dependencies().values() for d in deps}
    return [i for i in range(len(graph.nodes)) if i not in feeds]


def _fact(r: StepResult) -> str:
    assert r.value is not None
    detail = f" ({r.value.detail})" if r.value.detail else ""
    return f"- {r.task}: {r.value.as_text()}{detail}"


def _missing(r: StepResult) -> str:
    return f"{r.task} (node {r.node}): {r.error or r.status}"


def _template(facts: list[str], missing: tuple[str, ...]) -> str:
    lines = ["Results:", *facts] if facts else ["No step produced a result."]
    if missing:
        lines += ["Not done:", *(f"- {m}" for m in missing)]
    return "\n".join(lines)
