"""A plain-language run, start to end: plan, check, run every step, answer, record.

The run's id is on every step's ledger record; the run itself is one row of the ledger's
``runs`` table with its graph and its steps' outcomes, so ``tierwise explain RUN`` can
show the whole of it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from tierwise.config import RunsSpec
from tierwise.errors import InputError, TierwiseError
from tierwise.gateway.keys import Caller
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.runs.compose import Answer, compose
from tierwise.gateway.runs.executor import StepResult, execute
from tierwise.gateway.runs.planner_slot import PlannerSlot
from tierwise.gateway.runs.tools import ChatTool, StepContext, ToolRunner
from tierwise.gateway.runs.values import Value, file_value
from tierwise.ledger.store import RunRecord
from tierwise.orchestrate.catalog import Catalog, file_names, media_type
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.planner import AskChat, Planned, PlanRequest


@dataclass(frozen=True)
class RunRequest:
    """What the user asked, their files by name, and optionally the graph to run as it is."""

    text: str
    files: dict[str, bytes]
    graph: TaskGraph | None = None
    max_usd: float | None = None  # for the whole run


@dataclass
class RunResult:
    id: str
    planned: Planned
    planning: dict[str, Any]
    steps: list[StepResult]
    answer: Answer
    seconds: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if all(s.status == "ok" for s in self.steps):
            return "ok"
        return "partial" if any(s.status == "ok" for s in self.steps) else "failed"

    @property
    def usd(self) -> float:
        compose_usd = float((self.answer.ext or {}).get("measured", {}).get("usd_modelled", 0.0))
        return sum(s.usd for s in self.steps) + compose_usd + float(self.planning["usd_modelled"])

    def to_json(self) -> dict[str, Any]:
        """The answer to ``POST /v1/runs``."""
        answer = self.answer
        return {
            "id": self.id,
            "object": "tierwise.run",
            "status": self.status,
            "answer": answer.text,
            "answered_by": answer.how,
            "missing": list(answer.missing),
            "graph": self.planned.graph.to_taskbench(),
            "planning": self.planning,
            "steps": [step_json(s) for s in self.steps],
            "composing": _compose_json(answer),
            "latency_ms": round(self.seconds * 1e3, 3),
            "usd_modelled": self.usd,
            **self.notes,
        }


class RunService:
    def __init__(
        self,
        pipeline: Pipeline,
        catalog: Catalog,
        tools: dict[str, ToolRunner],
        writer: ChatTool | None,
        settings: RunsSpec,
    ) -> None:
        self._pipeline = pipeline
        self.catalog = catalog
        self.tools = tools
        self._writer = writer
        self._settings = settings
        self.planner = PlannerSlot()  # started with the gateway (see gateway.gateway)
        # How to ask a chat model for one request, placed under its policy; set by the
        # gateway where the cluster serves a chat model.
        self.ask_for: Callable[[Caller, RequestOptions], AskChat] | None = None

    async def run(self, caller: Caller, request: RunRequest, options: RequestOptions) -> RunResult:
        started, run_id = time.time(), uuid.uuid4().hex
        policy = self._pipeline.policy_for(caller, options)
        files, notes = _attached(request)
        # Planning asks (an llm planner's) are requests of the run too: same policy, same id.
        step_options = RequestOptions(policy, None, run_id)
        try:
            planned, planning = await self._plan(request, files, caller, step_options)
        except TierwiseError as exc:
            await self._record_refused(run_id, caller, request, exc, started)
            raise
        ctx = StepContext(caller, step_options, request.text)
        steps = await execute(planned.graph, files, self.tools, ctx, request.max_usd)
        spent = sum(s.usd for s in steps)
        may_ask = request.max_usd is None or spent < request.max_usd
        writer = self._writer if self._settings.compose == "chat" else None
        answer = await compose(planned.graph, steps, ctx, writer, may_ask)
        result = RunResult(run_id, planned, planning, steps, answer, time.time() - started, notes)
        await run_in_threadpool(
            self._pipeline.shared.ledger.record_run, _record(result, caller, request, started)
        )
        return result

    async def _plan(
        self, request: RunRequest, files: dict[str, Value], caller: Caller, options: RequestOptions
    ) -> tuple[Planned, dict[str, Any]]:
        """The graph (planned, or given) checked against the catalog and the files."""
        t0 = time.perf_counter()
        if request.graph is not None:
            planned = Planned(request.graph, "given")
        else:
            planner = await self.planner.get()
            t0 = time.perf_counter()  # planning time, not the wait for the planner to load
            ask = self.ask_for(caller, options) if self.ask_for else None
            planned = await planner.plan(PlanRequest(request.text, tuple(files), ask))
        seconds = time.perf_counter() - t0
        if len(planned.graph.nodes) > self._settings.max_steps:
            raise InputError(
                f"the plan has {len(planned.graph.nodes)} steps; gateway.runs.max_steps is "
                f"{self._settings.max_steps}",
                param="graph",
            )
        self.catalog.check(planned.graph, list(files))
        usage = planned.usage
        planning = {
            "planner": planned.planner,
            "latency_ms": round(seconds * 1e3, 3),
            "tries": planned.tries,
            "tier": usage.get("tier", self._pipeline.shared.gw.tier),
            "usd_modelled": float(usage.get("usd", 0.0)),
            **{k: v for k, v in usage.items() if k not in ("tier", "usd")},
        }
        return planned, planning

    async def _record_refused(
        self, run_id: str, caller: Caller, request: RunRequest, exc: TierwiseError, started: float
    ) -> None:
        exc.recorded = True  # in the runs table: the HTTP edge must not record it again
        status = "rejected" if exc.http_status < 500 else "error"
        record = RunRecord(
            run_id, started, caller.name, request.text, self._planner_name(request), status,
            latency_ms=(time.time() - started) * 1e3, explain={"error": exc.message},
        )  # fmt: skip
        await run_in_threadpool(self._pipeline.shared.ledger.record_run, record)

    def _planner_name(self, request: RunRequest) -> str:
        if request.graph is not None:
            return "given"
        return self._settings.planner


def _attached(request: RunRequest) -> tuple[dict[str, Value], dict[str, Any]]:
    """The files as values, by name. A file the text names but that was attached under
    another name answers to the text's name when that is the only way to read it: one
    file of that media type attached, and unnamed by the text."""
    files = {name: file_value(name, data) for name, data in request.files.items()}
    named = file_names(request.text)
    notes: dict[str, Any] = {}
    for wanted in (n for n in named if n not in files):
        kind = media_type(wanted)
        spare = [n for n in request.files if media_type(n) == kind and n not in named]
        if len(spare) == 1:
            files[wanted] = file_value(wanted, request.files[spare[0]])
            notes.setdefault("files_renamed", {})[spare[0]] = wanted
    return files, notes


def _record(result: RunResult, caller: Caller, request: RunRequest, started: float) -> RunRecord:
    return RunRecord(
        result.id,
        started,
        caller.name,
        request.text,
        result.planned.planner,
        result.status,
        usd_modelled=result.usd,
        latency_ms=result.seconds * 1e3,
        answer=result.answer.text,
        explain={
            "graph": result.planned.graph.to_taskbench(),
            "planning": result.planning,
            "steps": [step_json(s, with_data=False) for s in result.steps],
            "answer": {"how": result.answer.how, "missing": list(result.answer.missing)},
            **result.notes,
        },
    )


def _compose_json(answer: Answer) -> dict[str, Any] | None:
    """The composing chat request, when a chat model wrote the answer."""
    if answer.ext is None:
        return None
    m = answer.ext.get("measured", {})
    return {
        "request_id": answer.ext.get("request_id"),
        "plan": answer.ext.get("plan"),
        "tiers": answer.ext.get("tiers"),
        "latency_ms": m.get("latency_ms"),
        "usd_modelled": m.get("usd_modelled"),
        "joules_modelled": m.get("joules_modelled"),
    }


def step_json(step: StepResult, with_data: bool = True) -> dict[str, Any]:
    """One step as the answer and the run's record show it (costs modelled, as labelled)."""
    out: dict[str, Any] = {"node": step.node, "task": step.task, "status": step.status}
    if step.value is not None:
        out["output"] = step.value.to_json(with_data)
    if step.error:
        out["error"] = step.error
    ext = step.ext or {}
    if ext:
        m = ext.get("measured", {})
        out |= {
            "request_id": ext.get("request_id"),
            "plan": ext.get("plan"),
            "tiers": ext.get("tiers"),
            "latency_ms": m.get("latency_ms"),
            "bytes_up": m.get("bytes_up"),
            "bytes_down": m.get("bytes_down"),
            "usd_modelled": m.get("usd_modelled"),
            "joules_modelled": m.get("joules_modelled"),
        }
    out["started_ms"] = round(step.started_s * 1e3, 3)
    out["seconds"] = round(step.seconds, 4)
    return out
