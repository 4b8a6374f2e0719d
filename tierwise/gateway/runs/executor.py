"""Running a task graph: every step after its inputs, independent branches at once.

Each node is one asyncio task that waits for its predecessors, so two branches that do
not depend on each other run concurrently. A step whose input failed does not run, and
says which input; a tool no model here serves is reported as such, never faked. Once the
run has spent its ``max_usd``, or a budget refuses a step, no further step starts; the
steps already running finish.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from tierwise.errors import BudgetExceeded, TierwiseError
from tierwise.gateway.runs.tools import StepContext, ToolRunner
from tierwise.gateway.runs.values import Value, text_value
from tierwise.orchestrate.graph import NODE_REF, TaskGraph, TaskNode

StepStatus = Literal["ok", "failed", "not_served", "skipped"]
NOT_SERVED = "not served by this cluster"


@dataclass
class StepResult:
    node: int
    task: str
    status: StepStatus = "skipped"
    value: Value | None = None
    error: str | None = None
    ext: dict[str, Any] | None = None  # the step request's `tierwise` fields
    started_s: float = 0.0  # seconds after the run began
    seconds: float = 0.0

    @property
    def usd(self) -> float:
        return float((self.ext or {}).get("measured", {}).get("usd_modelled", 0.0))


@dataclass
class _Run:
    """What the steps of one run share while it executes."""

    graph: TaskGraph
    files: dict[str, Value]
    tools: dict[str, ToolRunner]
    ctx: StepContext
    max_usd: float | None
    started: float = field(default_factory=time.perf_counter)
    spent_usd: float = 0.0
    stopped: str | None = None  # why no further step may start


async def execute(
    graph: TaskGraph,
    files: dict[str, Value],
    tools: dict[str, ToolRunner],
    ctx: StepContext,
    max_usd: float | None = None,
) -> list[StepResult]:
    """Run ``graph`` (already checked); one result per node, in node order."""
    run = _Run(graph, files, tools, ctx, max_usd)
    deps = graph.dependencies()
    tasks: dict[int, asyncio.Task[StepResult]] = {}
    for i in graph.order():
        waits = [tasks[d] for d in sorted(deps[i])]
        tasks[i] = asyncio.create_task(_step(run, i, waits))
    return [await tasks[i] for i in range(len(graph.nodes))]


async def _step(run: _Run, i: int, waits: list[asyncio.Task[StepResult]]) -> StepResult:
    node = run.graph.nodes[i]
    result = StepResult(i, node.task)
    inputs = [await w for w in waits]
    failed = next((r for r in inputs if r.status != "ok"), None)
    if failed is not None:
        result.error = f"needs the output of node {failed.node} ({failed.task}), which has none"
        return result
    if node.task not in run.tools:
        result.status, result.error = "not_served", NOT_SERVED
        return result
    if run.stopped is not None:
        result.error = f"not started: {run.stopped}"
        return result
    await _run_tool(run, node, result, {r.node: r for r in inputs})
    return result


async def _run_tool(
    run: _Run, node: TaskNode, result: StepResult, done: dict[int, StepResult]
) -> None:
    result.started_s = time.perf_counter() - run.started
    try:
        output = await run.tools[node.task].run(_inputs(run, node, done), run.ctx)
    except BudgetExceeded as exc:
        result.status, result.error = "failed", exc.message
        run.stopped = "the budget was spent (" + exc.message + ")"
    except TierwiseError as exc:
        result.status, result.error = "failed", exc.message
    else:
        result.status, result.value, result.ext = "ok", output.value, output.ext
        run.spent_usd += result.usd
        if run.max_usd is not None and run.spent_usd >= run.max_usd:
            run.stopped = f"the run has spent ${run.spent_usd:.6f} of its max_usd ${run.max_usd}"
    result.seconds = time.perf_counter() - run.started - result.started_s


def _inputs(run: _Run, node: TaskNode, done: dict[int, StepResult]) -> list[Value]:
    """The node's arguments as values, then the output of any predecessor linked to it
    that no argument names (a link says data flows, even where the plan did not write
    ``<node-i>``)."""
    values = [_argument(run, a, done) for a in node.arguments]
    named = set(node.refs())
    for k in sorted(done):
        value = done[k].value
        if k not in named and value is not None:
            values.append(value)
    return values


def _argument(run: _Run, argument: str, done: dict[int, StepResult]) -> Value:
    whole = NODE_REF.fullmatch(argument.strip())
    if whole is not None:
        value = done[int(whole.group(1))].value
        assert value is not None  # the step only runs once its inputs are ok
        return value
    if argument.strip(" '\"") in run.files:
        return run.files[argument.strip(" '\"")]

    def output_text(m: Any) -> str:
        value = done[int(m.group(1))].value
        return value.as_text() if value is not None else m.group(0)

    return text_value(NODE_REF.sub(output_text, argument))
