"""The gateway's core: what every request shares on its way through.

:class:`Gateway` holds the node clients, the live view of links and nodes, the executor,
the recorder and the budgets, and runs the common path: lay the policies over each other,
check the budgets, decide, execute. :mod:`~tierwise.gateway.vision` and
:mod:`~tierwise.gateway.chat` do what is particular to each kind of request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from tierwise.config import BudgetSpec, Policy
from tierwise.errors import ClusterError, NotFoundError, UpstreamError
from tierwise.gateway.chat import ChatService
from tierwise.gateway.executor import Executed, Executor
from tierwise.gateway.keys import Caller
from tierwise.gateway.live import LiveView
from tierwise.gateway.metrics import GatewayMetrics
from tierwise.gateway.recorder import Pending, Recorder
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.vision import VisionService
from tierwise.ledger.store import BudgetScope, Ledger, periods
from tierwise.placement.cost import PlanTable
from tierwise.placement.planner import Decision, decide
from tierwise.placement.plans import Plan
from tierwise.placement.profiles import Profiles
from tierwise.runtime.node_client import NodeClient
from tierwise.runtime.state import ClusterState

PROFILE_SAVE_S = 30.0


class Gateway:
    def __init__(
        self,
        state: ClusterState,
        node_token: str,
        ledger: Ledger,
        profiles: Profiles,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if state.spec.gateway is None:
            raise ClusterError("the cluster spec has no `gateway:` section")
        self.spec = state.spec
        self.gw = state.spec.gateway
        self.ledger = ledger
        self.profiles = profiles
        timeout = self.gw.attempt_timeout + 5
        self.clients = {
            n.name: NodeClient(state.url_from(self.gw.tier, n.name), node_token, timeout=timeout)
            for n in self.spec.nodes
        }
        self.live = LiveView(self.spec, self.gw.tier, self.clients, clock, self.gw.probe_after_idle)
        self.executor = Executor(self.spec, self.gw, ledger, self.live)
        self.metrics = GatewayMetrics()
        self.recorder = Recorder(self.spec, ledger, profiles, self.live, self.metrics)
        self.vision = VisionService(self)
        self.chat = ChatService(self)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.vision.discover()
        self.chat.load_tokenizers()
        await run_in_threadpool(self.chat.load_router)
        for link in self.spec.links:
            if self.gw.tier in (link.a, link.b):
                for _ in range(2):
                    await self.live.probe(link.name)
        self._tasks = [
            asyncio.create_task(self.live.run_prober()),
            asyncio.create_task(self._save_profiles_every(PROFILE_SAVE_S)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())
        for client in self.clients.values():
            await client.aclose()
        self.chat.close()

    async def _save_profiles_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await run_in_threadpool(self.ledger.save_profiles, self.profiles.rows())

    # -- the shared path -----------------------------------------------------------------

    async def plan_and_run(
        self,
        pending: Pending,
        table: PlanTable,
        options: RequestOptions,
        run_one: Any,
        bound_of: Callable[[Plan, float], float],
        policy: Policy | None = None,
    ) -> Executed[Any]:
        """Policy, budgets, decision, execution; notes what the record will need.

        ``policy``, when given, replaces the merged one (chat narrows privacy to what
        the prompt's content requires).
        """
        policy = policy or self.policy_for(pending.caller, options)
        scopes = self._scopes(pending.caller.name, pending.created_at)
        budget_ok = await run_in_threadpool(self._budget_left, scopes)
        pending.policy, pending.budget_ok = policy, budget_ok
        started = time.perf_counter()
        live = self.live.state(table)
        decision = decide(table, live, policy, budget_ok)
        self.metrics.planner.observe(time.perf_counter() - started)
        pending.decision = decision
        explained = decision.explain(policy, budget_ok, live)
        pending.explain["considered"] = explained
        order = self._order(table, decision, options.pinned_plan, explained)
        executed = await self.executor.run(
            table, order, decision.latency, scopes, run_one, bound_of
        )
        if len(executed.attempts) > 1:
            self.metrics.fallbacks.inc(len(executed.attempts) - 1)
        return executed

    def policy_for(self, caller: Caller, options: RequestOptions) -> Policy:
        """The request's policy over the API key's over the gateway's."""
        return options.policy.over(caller.policy.over(self.gw.policy))

    async def node_call(self, node: str, link: str | None, call: Any) -> Any:
        """Await a node call, counting it as in flight and naming the node on failure."""
        health = self.live.nodes[node]
        health.inflight += 1
        if link is not None:
            self.live.link_inflight[link] += 1
        try:
            return await call
        except UpstreamError as exc:
            exc.node = node
            raise
        finally:
            health.inflight -= 1
            if link is not None:
                self.live.link_inflight[link] -= 1

    def _order(
        self,
        table: PlanTable,
        decision: Decision,
        pinned: str | None,
        explained: list[dict[str, Any]],
    ) -> list[int]:
        """The plans to try: the decision's, or just the pinned one (no fallback)."""
        if pinned is None:
            return self.executor.attempt_order(table, decision.ranking)
        ids = [p.id for p in table.plans]
        if pinned not in ids:
            raise NotFoundError(f"no plan {pinned!r} for this request; plans: {ids}", param="plan")
        index = ids.index(pinned)
        if not decision.hard_ok[index]:
            why = explained[index]["excluded"]
            raise NotFoundError(f"plan {pinned!r} cannot run now: {why}", param="plan")
        return [index]

    # -- budgets ---------------------------------------------------------------------------

    def _scopes(self, key: str, now: float) -> list[BudgetScope]:
        day, month = periods(now)
        scopes = []
        for scope, budget in (("global", self.gw.budget), (f"key:{key}", self._key_budget(key))):
            if budget.daily_usd is not None:
                scopes.append(BudgetScope(scope, day, budget.daily_usd))
            if budget.monthly_usd is not None:
                scopes.append(BudgetScope(scope, month, budget.monthly_usd))
        return scopes

    def _key_budget(self, key: str) -> BudgetSpec:
        return next((k.budget for k in self.gw.api_keys if k.name == key), BudgetSpec())

    def _budget_left(self, scopes: list[BudgetScope]) -> bool:
        ok = True
        for scope in scopes:
            spent, reserved = self.ledger.usage(scope)
            left = scope.limit_usd - spent - reserved
            self.metrics.budget_remaining.labels(scope=scope.scope, period=scope.period).set(left)
            ok = ok and left > 0
        return ok
