"""The live cascade for ``model: "auto"``, as a wrapper: the device's own model answers first.

Its answer is kept when the model was sure of it: the geometric mean of its tokens'
probabilities (``exp`` of the mean log-probability llama.cpp reports) is at least the
policy's ``cascade_confidence``. Otherwise the request goes on to the other tiers and
whichever model answers there is what the client gets. The local try is recorded in
the ledger on its own (it cost energy), and both records name each other. If going on
fails (links down, budget spent), the local answer is served after all, and says so.

The threshold is calibrated to a target accuracy with ``tierwise cascade calibrate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tierwise.errors import TierwiseError
from tierwise.gateway.chat.answering import ChatAnswerer, ChatCall, Streamed, replayed
from tierwise.gateway.live import LiveView
from tierwise.gateway.recorder import Pending, Served
from tierwise.placement.plans import Plan


def is_local(plan: Plan) -> bool:
    return plan.link is None


def is_remote(plan: Plan) -> bool:
    return plan.link is not None


def confidence(ext: dict[str, Any]) -> float | None:
    """Geometric-mean token probability of an answer, if its model reported one."""
    mean = ext.get("mean_logprob")
    return None if mean is None else math.exp(float(mean))


@dataclass
class _FirstStep:
    """The local answer (recorded), whether it was kept, and the call that goes on."""

    served: Served
    kept: bool
    escalation: ChatCall

    def fallback(self, exc: TierwiseError, offline: bool) -> Served:
        """The local answer after all, when escalating failed."""
        ext = self.served.body["tierwise"]
        ext["cascade"]["escalation_failed"] = exc.message
        ext["offline"] = offline
        return self.served


class CascadeChat:
    def __init__(
        self, inner: ChatAnswerer, plans: Callable[[], list[Plan]], live: LiveView
    ) -> None:
        """``plans``: every chat plan the cluster has, to see whether there is anything
        to cascade between."""
        self._inner = inner
        self._plans = plans
        self._live = live

    async def complete(self, call: ChatCall) -> Served:
        threshold = self._threshold(call)
        if threshold is None:
            return await self._inner.complete(call)
        first = await self._first_step(call, threshold)
        if first.kept:
            return first.served
        try:
            return await self._inner.complete(first.escalation)
        except TierwiseError as exc:
            return first.fallback(exc, self._live.offline())

    async def stream(self, call: ChatCall) -> Streamed:
        threshold = self._threshold(call)
        if threshold is None:
            return await self._inner.stream(call)
        first = await self._first_step(call, threshold)
        wants_usage = call.body.wants_usage_in_stream
        if first.kept:
            return replayed(first.served, wants_usage)
        try:
            return await self._inner.stream(first.escalation)
        except TierwiseError as exc:
            return replayed(first.fallback(exc, self._live.offline()), wants_usage)

    def _threshold(self, call: ChatCall) -> float | None:
        """The confidence to reach, when a cascade applies to this request."""
        if call.body.model != "auto" or call.policy.cascade_confidence is None:
            return None
        plans = self._plans()
        if not any(map(is_local, plans)) or not any(map(is_remote, plans)):
            return None  # nothing to cascade between
        return call.policy.cascade_confidence

    async def _first_step(self, call: ChatCall, threshold: float) -> _FirstStep:
        note: dict[str, Any] = {"threshold": threshold, "first_request": call.pending.id}

        def judge(pending: Pending, ext: dict[str, Any]) -> None:
            conf = confidence(ext)
            note["confidence"] = None if conf is None else round(conf, 4)
            note["escalated"] = conf is None or conf < threshold
            pending.notes["cascade"] = note

        served = await self._inner.complete(call.with_(only=is_local, on_reply=judge))
        after = call.pending.next_step()
        after.notes = {"cascade": note}
        escalation = call.with_(pending=after, only=is_remote, on_reply=None)
        return _FirstStep(served, not note["escalated"], escalation)
