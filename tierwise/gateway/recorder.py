"""The end of every request: its ledger record, its metrics, and its ``tierwise`` fields.

Every request that gets past authentication ends here exactly once: served (``ok``),
refused by policy or budget (``rejected``), failed on every plan (``error``), or, for a
stream, left by its client (``cancelled``). Its record is committed before the response
is sent, and in the same transaction its budget holds are released and its charge
(:meth:`~tierwise.gateway.executor.Spend.charge`: what every attempt used) is added to
its budgets, so the budgets and the ledger say the same.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from tierwise.config import ClusterSpec, Policy
from tierwise.errors import TierwiseError
from tierwise.gateway.executor import Executed, Spend
from tierwise.gateway.keys import Caller
from tierwise.gateway.live import LiveView
from tierwise.gateway.metrics import GatewayMetrics
from tierwise.ledger.store import Ledger, RequestRecord
from tierwise.placement.cost import build_chat_table
from tierwise.placement.planner import Decision
from tierwise.placement.plans import Plan
from tierwise.placement.profiles import Profiles


@dataclass
class Pending:
    """A request in progress: what its record needs, gathered as it goes."""

    id: str
    created_at: float
    caller: Caller
    task: str
    model: str
    #: the policy as merged once at the door (request over API key over gateway); the
    #: planner may decide under a narrowing of it (chat privacy), which the notes say
    policy: Policy
    decision: Decision | None = None
    explain: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the plain-language run this request is a step of
    # Notes for the answer's `tierwise` object and the record: "privacy" (PII kinds found
    # and what was done, never values), "cascade" (confidence, threshold, escalation).
    notes: dict[str, Any] = field(default_factory=dict)
    spend: Spend = field(default_factory=Spend)  # holds and charges, settled with the record

    @classmethod
    def new(
        cls, caller: Caller, task: str, model: str, policy: Policy, run_id: str | None = None
    ) -> Pending:
        pending = cls(uuid.uuid4().hex, time.time(), caller, task, model, policy)
        pending.run_id = run_id
        return pending

    def next_step(self) -> Pending:
        """A second record for the same request (a cascade's escalation): same caller,
        clock and policy, a new id."""
        step = Pending(
            uuid.uuid4().hex, self.created_at, self.caller, self.task, self.model, self.policy
        )
        step.run_id = self.run_id
        return step

    def why(self) -> dict[str, Any]:
        """The record's ``explain``: the policy, what was considered, the notes."""
        policy = self.policy.model_dump(mode="json", exclude_none=True)
        return {"policy": policy, **self.explain, **self.notes}


@dataclass
class Served:
    body: dict[str, Any]
    headers: dict[str, str]
    cloud_usd: float = 0.0  # what the request would have cost all in the cloud


class Recorder:
    def __init__(
        self,
        spec: ClusterSpec,
        ledger: Ledger,
        profiles: Profiles,
        live: LiveView,
        metrics: GatewayMetrics,
    ) -> None:
        self.spec = spec
        self.ledger = ledger
        self.profiles = profiles
        self.live = live
        self.metrics = metrics

    async def served(
        self,
        pending: Pending,
        executed: Executed[Any],
        body: dict[str, Any],
        status: str = "ok",
        error: str | None = None,
    ) -> Served:
        """Record a served request and add its ``tierwise`` fields to ``body``.

        ``status`` is "cancelled" (or "error") for a stream that ended early, charged for
        what ``executed.measured`` says it generated; ``error`` says why."""
        decision = pending.decision
        assert decision is not None
        i, plan, m = executed.index, executed.plan, executed.measured
        charge = pending.spend.charge(executed.usd)
        offline = not plan.remote and self.live.offline()
        ext = {
            "request_id": pending.id,
            "plan": plan.id,
            "tiers": list(plan.tiers),
            "offline": offline,
            "relaxed": decision.relaxed,
            "quality_floor": decision.quality_floor.as_dict(),
            **pending.notes,
            "attempts": [a.__dict__ for a in executed.attempts],
            "predicted": _predicted(decision, i),
            # Measured quantities priced by the model: the figures say which they are.
            "measured": {
                "latency_ms": round(m.latency_s * 1e3, 3),
                "usd_modelled": charge,
                "joules_modelled": round(executed.joules, 4),
                "joules_measured": _joules(m.measured_compute_joules),
                "bytes_up": m.bytes_up,
                "bytes_down": m.bytes_down,
            },
        }
        record = _new(pending, plan.id, ",".join(plan.tiers), status)
        record.error = error
        record.tokens_in, record.tokens_out = m.tokens_in, m.tokens_out
        record.bytes_up, record.bytes_down = m.bytes_up, m.bytes_down
        record.latency_ms, record.usd_modelled, record.joules_modelled = (
            m.latency_s * 1e3,
            charge,
            executed.joules,
        )
        record.joules_measured = m.measured_compute_joules
        record.predicted_latency_ms = float(decision.latency[i] * 1e3)
        record.predicted_usd_modelled = float(decision.usd[i])
        record.predicted_joules_modelled = float(decision.joules[i])
        record.cloud_usd_modelled = self._cloud_usd(decision, executed)
        quality = decision.table.quality[i]
        record.quality = None if np.isnan(quality) else float(quality)
        record.offline, record.attempts = offline, len(executed.attempts)
        record.explain = {
            **pending.why(),
            "relaxed": decision.relaxed,
            "quality_floor": ext["quality_floor"],
            "attempts": ext["attempts"],
        }
        spend = pending.spend
        await run_in_threadpool(self.ledger.record, record, spend.holds, spend.scopes)
        self._count(record, plan)
        return Served({**body, "tierwise": ext}, _headers(ext), record.cloud_usd_modelled)

    async def cache_hit(
        self, pending: Pending, cache: dict[str, Any], saved_usd: float, body: dict[str, Any]
    ) -> Served:
        """Record an answer served from the cache: $0 spent, ``saved_usd`` (the original
        answer's all-cloud price) saved. ``cache`` says what matched, for the record."""
        latency_ms = (time.time() - pending.created_at) * 1e3
        tier = "device" if self.spec.gateway is None else self.spec.gateway.tier
        zero = {"usd_modelled": 0.0, "joules_modelled": 0.0, "bytes_up": 0, "bytes_down": 0}
        ext = {
            "request_id": pending.id,
            "plan": "cache",
            "tiers": [tier],
            "offline": False,
            "relaxed": [],
            "attempts": [],
            "cache": cache,
            "predicted": {"latency_ms": 0.0, **zero, "quality": None},
            "measured": {"latency_ms": round(latency_ms, 3), **zero, "joules_measured": None},
        }
        record = _new(pending, "cache", tier, "ok")
        record.latency_ms, record.cloud_usd_modelled, record.attempts = latency_ms, saved_usd, 0
        record.explain = {**pending.why(), "cache": cache}
        await run_in_threadpool(self.ledger.record, record)
        self.metrics.requests.labels(
            task=pending.task, tier=tier, model=pending.model, status="ok"
        ).inc()
        return Served({**body, "tierwise": ext}, _headers(ext), record.cloud_usd_modelled)

    async def failed(self, pending: Pending, exc: TierwiseError) -> None:
        exc.recorded = True  # the HTTP edge records what no service did (edge_errors)
        status = "rejected" if exc.http_status < 500 else "error"
        record = _new(pending, "-", "", status)
        record.error = f"{exc.code}: {exc.message}"
        record.offline = self.live.offline()
        spend = pending.spend
        # Failed attempts still used something: the record charges it, and says how.
        record.usd_modelled, record.attempts = spend.charge(0.0), len(spend.attempts)
        attempts = [a.__dict__ for a in spend.attempts]
        record.explain = {**pending.why(), "error": exc.message, "attempts": attempts}
        with contextlib.suppress(Exception):  # never mask the request's own error
            await run_in_threadpool(self.ledger.record, record, spend.holds, spend.scopes)
        self.metrics.requests.labels(
            task=pending.task, tier="-", model=pending.model, status=status
        ).inc()

    def _cloud_usd(self, decision: Decision, executed: Executed[Any]) -> float:
        """What the same request would have cost all in the cloud (the cheapest cloud plan)."""
        cloud = [i for i, p in enumerate(decision.table.plans) if p.tiers == ("cloud",)]
        if not cloud:
            return executed.usd
        if executed.plan.task != "chat":
            return float(min(decision.usd[i] for i in cloud))
        # A chat answer's length is known now: price the cloud for exactly these tokens.
        m = executed.measured
        plans = [decision.table.plans[i] for i in cloud]
        tokens = {p.model: m.tokens_in for p in plans}
        table = build_chat_table(
            self.spec, plans, self.profiles, tokens, m.tokens_out, exact_tokens=True
        )
        costs = [u for u, ok in zip(table.usd, table.profiled, strict=True) if ok]
        return float(min(costs)) if costs else executed.usd

    def _count(self, record: RequestRecord, plan: Plan) -> None:
        tier, mm = plan.tiers[-1], self.metrics
        status = record.status
        mm.requests.labels(task=record.task, tier=tier, model=plan.model, status=status).inc()
        mm.latency.labels(task=record.task, tier=tier, model=plan.model).observe(
            record.latency_ms / 1e3
        )
        mm.usd.labels(tier=tier, model=plan.model).inc(record.usd_modelled)
        mm.joules.labels(tier=tier, model=plan.model).inc(record.joules_modelled)
        mm.tokens.labels(tier=tier, model=plan.model, kind="in").inc(record.tokens_in)
        mm.tokens.labels(tier=tier, model=plan.model, kind="out").inc(record.tokens_out)
        mm.bytes.labels(direction="up").inc(record.bytes_up)
        mm.bytes.labels(direction="down").inc(record.bytes_down)
        mm.plans.labels(plan=plan.id).inc()


def _new(pending: Pending, plan: str, tiers: str, status: str) -> RequestRecord:
    return RequestRecord(
        id=pending.id,
        created_at=pending.created_at,
        api_key=pending.caller.name,
        task=pending.task,
        model=pending.model,
        plan=plan,
        tiers=tiers,
        status=status,
        run_id=pending.run_id,
    )


def _predicted(decision: Decision, i: int) -> dict[str, Any]:
    t = decision.table
    return {
        "latency_ms": round(float(decision.latency[i]) * 1e3, 3),
        "usd_modelled": float(decision.usd[i]),
        "joules_modelled": round(float(decision.joules[i]), 4),
        "bytes_up": int(t.bytes_up[i]),
        "bytes_down": int(t.bytes_down[i]),
        "quality": None if np.isnan(t.quality[i]) else round(float(t.quality[i]), 4),
        "agreement": None if np.isnan(t.agreement[i]) else round(float(t.agreement[i]), 4),
    }


def _joules(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _headers(ext: dict[str, Any]) -> dict[str, str]:
    m, p = ext["measured"], ext["predicted"]
    cost = (
        f"latency_ms={m['latency_ms']}; usd_modelled={m['usd_modelled']:.9f}; "
        f"joules_modelled={m['joules_modelled']}; "
        f"bytes_up={m['bytes_up']}; bytes_down={m['bytes_down']}; "
        f"predicted_latency_ms={p['latency_ms']}; "
        f"predicted_usd_modelled={p['usd_modelled']:.9f}"
    )
    return {
        "X-Tierwise-Request-Id": ext["request_id"],
        "X-Tierwise-Plan": ext["plan"],
        "X-Tierwise-Tiers": ",".join(ext["tiers"]),
        "X-Tierwise-Cost": cost,
        "X-Tierwise-Offline": "true" if ext["offline"] else "false",
    }
