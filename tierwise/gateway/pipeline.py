"""The path every planned request takes: budgets, the decision, the attempts.

The services (chat, vision) build a plan table and a way to run one plan; the pipeline
checks the budgets, asks the planner, and runs the plans in rank order through the
executor. It also holds what those services share (the spec, profiles, the live view,
node calls and the recorder), so that a service gets the pipeline and never the whole
:class:`~tierwise.gateway.gateway.Gateway`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from tierwise.config import BudgetSpec, ClusterSpec, GatewaySpec, Policy
from tierwise.errors import NotFoundError
from tierwise.gateway.executor import BoundOf, Executed, Executor, RunOne
from tierwise.gateway.keys import Caller
from tierwise.gateway.live import LiveView
from tierwise.gateway.metrics import GatewayMetrics
from tierwise.gateway.nodes import NodeCalls
from tierwise.gateway.recorder import Pending, Recorder
from tierwise.gateway.request_options import RequestOptions
from tierwise.ledger.store import BudgetScope, HoldTag, Ledger, periods
from tierwise.placement.cost import PlanTable
from tierwise.placement.planner import Decision, decide, why_not
from tierwise.placement.profiles import Profiles


@dataclass(frozen=True)
class Shared:
    """What the services read and teach: the cluster, its profiles and its live state."""

    spec: ClusterSpec
    gw: GatewaySpec
    profiles: Profiles
    live: LiveView
    nodes: NodeCalls
    recorder: Recorder
    ledger: Ledger


class Pipeline:
    def __init__(self, shared: Shared, executor: Executor, metrics: GatewayMetrics) -> None:
        self.shared = shared
        self._executor = executor
        self._metrics = metrics

    def policy_for(self, caller: Caller, options: RequestOptions) -> Policy:
        """The request's policy over the API key's over the gateway's: merged once, when
        the request comes in, and carried on its :class:`Pending` to the ledger."""
        return options.policy.over(caller.policy.over(self.shared.gw.policy))

    async def run(
        self,
        pending: Pending,
        table: PlanTable,
        policy: Policy,
        pinned: str | None,
        run_one: RunOne[Any],
        bound_of: BoundOf,
    ) -> Executed[Any]:
        """Decide under ``policy`` and the budgets, then attempt plans in turn.

        ``policy`` is ``pending.policy`` or a narrowing of it (chat privacy)."""
        scopes = self._scopes(pending.caller.name, pending.created_at)
        pending.spend.scopes = tuple(scopes)
        pending.spend.tag = HoldTag(
            pending.id, pending.caller.name, pending.task, pending.model, pending.created_at
        )
        budget_ok = await run_in_threadpool(self._budget_left, scopes)
        started = time.perf_counter()
        live = self.shared.live.state(table)
        decision = decide(table, live, policy, budget_ok)
        self._metrics.planner.observe(time.perf_counter() - started)
        pending.decision = decision
        explained = decision.explain(policy, budget_ok, live)
        pending.explain["considered"] = explained
        order = self._order(
            table, decision, pinned, lambda i: why_not(table, i, policy, budget_ok, live)
        )
        executed = await self._executor.run(
            table, order, decision.latency, pending.spend, run_one, bound_of
        )
        if len(executed.attempts) > 1:
            self._metrics.fallbacks.inc(len(executed.attempts) - 1)
        return executed

    def _order(
        self,
        table: PlanTable,
        decision: Decision,
        pinned: str | None,
        excluded_because: Callable[[int], str],
    ) -> list[int]:
        """The plans to try: the decision's, or just the pinned one (no fallback)."""
        if pinned is None:
            return self._executor.attempt_order(table, decision.ranking)
        ids = [p.id for p in table.plans]
        if pinned not in ids:
            raise NotFoundError(f"no plan {pinned!r} for this request; plans: {ids}", param="plan")
        index = ids.index(pinned)
        if not decision.hard_ok[index]:
            why = excluded_because(index)
            raise NotFoundError(f"plan {pinned!r} cannot run now: {why}", param="plan")
        return [index]

    # -- budgets ---------------------------------------------------------------------------

    def _scopes(self, key: str, now: float) -> list[BudgetScope]:
        day, month = periods(now)
        gw = self.shared.gw
        scopes = []
        for scope, budget in (("global", gw.budget), (f"key:{key}", self._key_budget(key))):
            if budget.daily_usd is not None:
                scopes.append(BudgetScope(scope, day, budget.daily_usd))
            if budget.monthly_usd is not None:
                scopes.append(BudgetScope(scope, month, budget.monthly_usd))
        return scopes

    def _key_budget(self, key: str) -> BudgetSpec:
        return next((k.budget for k in self.shared.gw.api_keys if k.name == key), BudgetSpec())

    def _budget_left(self, scopes: list[BudgetScope]) -> bool:
        ok = True
        for scope in scopes:
            spent, reserved = self.shared.ledger.usage(scope)
            left = scope.limit_usd - spent - reserved
            gauge = self._metrics.budget_remaining.labels(scope=scope.scope, period=scope.period)
            gauge.set(left)
            ok = ok and left > 0
        return ok
