"""Runs a decision: attempt plans in rank order until one succeeds.

Each attempt on a paid plan first holds its cost bound in the budgets (an attempt that
cannot be afforded is skipped, not failed). A node error or timeout marks the node
down for a moment and moves on to the next plan; what the failed attempt used stays on
hold, and is charged with the request's record (see :func:`failed_attempt_usd`). The
last attempt is kept for the best plan that stays on the client's own tier, so losing
every link never loses a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from tierwise.config import ClusterSpec, GatewaySpec
from tierwise.errors import BudgetExceeded, TierwiseError, UpstreamError
from tierwise.gateway.live import LiveView
from tierwise.ledger.store import BudgetScope, HoldTag, Ledger, Reservation
from tierwise.placement.cost import PlanTable
from tierwise.placement.costing import USD_DIGITS, Measured, plan_cost
from tierwise.placement.plans import Plan

T = TypeVar("T")
MIN_TIMEOUT_S = 2.0
TIMEOUT_FACTOR = 4.0


class AllAttemptsFailed(TierwiseError):
    http_status = 503
    code = "all_plans_failed"


@dataclass
class Attempt:
    plan: str
    outcome: str  # ok | failed | timeout | over-budget
    error: str | None = None
    seconds: float = 0.0
    usd_modelled: float = 0.0  # charged: the price tables' figure for what it used


@dataclass
class Spend:
    """One request's money while it runs: the budgets it is charged to, the holds its
    attempts took, and what its failed attempts used. The recorder charges it all, once,
    in the transaction that writes the request's record."""

    scopes: tuple[BudgetScope, ...] = ()
    tag: HoldTag | None = None
    holds: list[Reservation] = field(default_factory=list)
    used_usd: float = 0.0  # by failed and abandoned attempts, at the ledger's rates
    attempts: list[Attempt] = field(default_factory=list)

    def charge(self, usd: float) -> float:
        """The request's whole charge: ``usd`` for its answer plus what failed attempts
        used, in whole nano-dollars like the budgets."""
        return round(self.used_usd + usd, USD_DIGITS)


@dataclass
class Executed(Generic[T]):
    index: int
    plan: Plan
    result: T
    measured: Measured
    usd: float  # the answering attempt's cost; the request's charge is Spend.charge(usd)
    joules: float
    attempts: list[Attempt] = field(default_factory=list)


RunOne = Callable[[Plan, float], Awaitable[tuple[T, Measured]]]
BoundOf = Callable[[Plan, float], float]


class Executor:
    def __init__(
        self, spec: ClusterSpec, gateway: GatewaySpec, ledger: Ledger, live: LiveView
    ) -> None:
        self.spec = spec
        self.gateway = gateway
        self.ledger = ledger
        self.live = live

    def attempt_order(self, table: PlanTable, ranking: Sequence[int]) -> list[int]:
        """The first ``max_attempts - 1`` plans, then the best local one as a last resort."""
        limit = self.gateway.max_attempts
        order = list(ranking[: max(1, limit - 1)])
        local = next((i for i in ranking if not table.plans[i].remote), None)
        if local is not None and local not in order:
            order.append(local)
        elif len(ranking) > len(order):
            order.append(ranking[len(order)])
        return order

    def timeout_for(self, predicted_s: float) -> float:
        return min(self.gateway.attempt_timeout, max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * predicted_s))

    async def run(
        self,
        table: PlanTable,
        order: Sequence[int],
        predicted: np.ndarray,
        spend: Spend,
        run_one: RunOne[T],
        bound_of: BoundOf,
    ) -> Executed[T]:
        attempts = spend.attempts
        for i in order:
            plan = table.plans[i]
            timeout = self.timeout_for(float(predicted[i]))
            bound = bound_of(plan, timeout) if table.paid[i] else 0.0
            try:
                reservation = await run_in_threadpool(
                    self.ledger.reserve, spend.scopes, bound, spend.tag, timeout
                )
            except BudgetExceeded as exc:
                attempts.append(Attempt(plan.id, "over-budget", exc.message))
                continue
            held = bound > 0 and bool(spend.scopes)
            if held:
                spend.holds.append(reservation)
            started = time.perf_counter()
            try:
                result, measured = await asyncio.wait_for(run_one(plan, timeout), timeout)
            except (UpstreamError, TimeoutError) as exc:
                failed = self._failed(plan, exc, time.perf_counter() - started, bound)
                attempts.append(failed)
                spend.used_usd += failed.usd_modelled
                if held:
                    await run_in_threadpool(self.ledger.keep_used, reservation, failed.usd_modelled)
                continue
            measured.latency_s = time.perf_counter() - started
            usd, joules = plan_cost(self.spec, plan, measured)
            attempts.append(Attempt(plan.id, "ok", None, measured.latency_s, usd))
            return Executed(i, plan, result, measured, usd, joules, attempts)
        if attempts and all(a.outcome == "over-budget" for a in attempts):
            raise BudgetExceeded(
                "every plan that could serve this request is paid and the budget cannot cover "
                f"it: {attempts[0].error}"
            )
        tried = "; ".join(f"{a.plan}: {a.outcome} ({a.error})" for a in attempts)
        raise AllAttemptsFailed(f"every plan tried failed: {tried}")

    def _failed(self, plan: Plan, exc: Exception, seconds: float, bound: float) -> Attempt:
        culprit = getattr(exc, "node", None) or plan.tail_node or plan.head_node
        if culprit is not None and (isinstance(exc, TimeoutError) or _is_node_fault(exc)):
            self.live.node_failed(culprit)
        silent = getattr(exc, "status", 0) is None
        if plan.link is not None and culprit != plan.head_node and silent:
            # No answer at all from across the link: the link itself may be down.
            self.live.links[plan.link].failure()
        used = min(bound, failed_attempt_usd(self.spec, plan, seconds))
        if isinstance(exc, TimeoutError):
            return Attempt(plan.id, "timeout", f"no answer within {seconds:.1f} s", seconds, used)
        return Attempt(plan.id, "failed", str(exc), seconds, used)


def failed_attempt_usd(spec: ClusterSpec, plan: Plan, seconds: float) -> float:
    """What an attempt that gave no answer used, at the ledger's rates.

    A failed or timed-out attempt reports nothing: no compute time, no token counts. We
    assume every node of the plan computed for the whole ``seconds`` we waited on it (it
    cannot have computed for us longer, and a node that errs at once costs ~nothing).
    Tokens and bytes are unknown and charged as zero: a remote API model (token-billed,
    no compute price, see :func:`~tierwise.placement.costing.plan_cost`) that timed out is
    thus charged $0, as its usage only ever arrives with its answer. Never more than the
    attempt's hold (the caller caps it)."""
    busy = Measured(head_compute_s=seconds, tail_compute_s=seconds)
    busy.last_compute_s = seconds if plan.last_node is not None else 0.0
    return plan_cost(spec, plan, busy)[0]


def _is_node_fault(exc: Exception) -> bool:
    """Connection failures and 5xx answers say the node (or its link) is in trouble."""
    status = getattr(exc, "status", None)
    return status is None or status >= 500
