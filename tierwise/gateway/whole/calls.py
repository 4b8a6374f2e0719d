"""What every service of a model called whole shares: plan, run, teach, record.

A call runs the whole model on one node that hosts it, on the gateway's own tier or
across the link to that node. Its plans are costed from the node's measured compute per
item and the bytes the call moves (:func:`~tierwise.placement.cost.build_whole_table`),
run through the :class:`~tierwise.gateway.pipeline.Pipeline` like chat and vision, and
every answer teaches the profiles and the live view what it measured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tierwise.config import Policy
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.gateway.executor import Executed
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Pending, Served
from tierwise.models.kinds import Role, hosted_models
from tierwise.placement.cost import HTTP_OVERHEAD_DOWN, build_whole_table
from tierwise.placement.costing import Measured, cost_bound
from tierwise.placement.plans import Plan, Sends, WholeTask, whole_plans
from tierwise.placement.profiles import ANY_NODE, CALL_MS, OUT_BYTES
from tierwise.runtime.node_client import NodeClient, Transfer


class NodeReply(Protocol):
    """What every whole-model answer from a node carries besides its result."""

    @property
    def ext(self) -> dict[str, Any]: ...

    @property
    def transfer(self) -> Transfer: ...


R = TypeVar("R", bound=NodeReply)


@dataclass(frozen=True)
class WholeRequest(Generic[R]):
    """One request made ready to plan: its model, its size, and how to ask a node."""

    model: str
    policy: Policy
    pinned: str | None
    items: int  # texts, or image-and-question pairs
    request_bytes: int  # the body a node is sent
    ask: Callable[[NodeClient, str], Awaitable[R]]  # (a node's client, model) → its answer
    tokens: Callable[[R], int] = lambda _: 0  # tokens the answer read, for the record


class WholeCalls:
    """Plans and runs calls of the models of one role (``embedding`` or ``vqa``)."""

    def __init__(self, pipeline: Pipeline, role: Role, task: WholeTask, sends: Sends) -> None:
        self._pipeline = pipeline
        self._shared = pipeline.shared
        self.role, self.task, self.sends = role, task, sends

    def models(self) -> list[str]:
        return hosted_models(self._shared.spec, self.role)

    def check_model(self, name: str) -> str:
        known = self.models()
        if name not in known:
            raise NotFoundError(f"no {self.role} model {name!r}; models: {known}", param="model")
        return name

    async def serve(
        self,
        pending: Pending,
        prepare: Callable[[], WholeRequest[R]],
        body_of: Callable[[R], dict[str, Any]],
    ) -> Served:
        """Check the request (``prepare``), plan and run it, and record how it ended."""
        try:
            request = prepare()
            executed = await self._run(pending, request)
        except TierwiseError as exc:
            await self._shared.recorder.failed(pending, exc)
            raise
        return await self._shared.recorder.served(pending, executed, body_of(executed.result))

    async def _run(self, pending: Pending, request: WholeRequest[R]) -> Executed[R]:
        shared = self._shared
        spec, tier = shared.spec, shared.gw.tier
        plans = whole_plans(spec, [request.model], tier, self.task, self.sends)
        table = build_whole_table(
            spec, plans, shared.profiles, request.items, request.request_bytes
        )

        async def run_one(plan: Plan, _: float) -> tuple[R, Measured]:
            return await self._attempt(plan, request)

        def bound(plan: Plan, timeout: float) -> float:
            out = shared.profiles.get(ANY_NODE, plan.model, OUT_BYTES) or 4096.0
            down = int(2 * request.items * out + 4096)
            return cost_bound(spec, plan, timeout, 2 * request.request_bytes + 4096, down)

        return await self._pipeline.run(
            pending, table, request.policy, request.pinned, run_one, bound
        )

    async def _attempt(self, plan: Plan, request: WholeRequest[R]) -> tuple[R, Measured]:
        """Ask the plan's node; what the answer measured teaches the profiles and links."""
        shared, node = self._shared, plan.tail_node
        assert node is not None
        nodes = shared.nodes
        reply: R = await nodes.call(node, plan.link, request.ask(nodes.client(node), plan.model))
        compute_s = float(reply.ext.get("compute_ms", 0.0)) / 1e3
        t = reply.transfer
        shared.live.node_served(node, compute_s)
        if plan.link is not None:
            shared.live.observe(plan.link, t.bytes_up + t.bytes_down, t.seconds, compute_s)
        items = max(request.items, 1)
        shared.profiles.observe(node, plan.model, CALL_MS, compute_s * 1e3 / items)
        shared.profiles.observe(ANY_NODE, plan.model, OUT_BYTES, answer_bytes(t, items))
        remote = plan.link is not None
        up, down = (t.bytes_up, t.bytes_down) if remote else (0, 0)
        measured = Measured(t.seconds, up, down, 0.0, compute_s, request.tokens(reply), 0)
        return reply, measured


def answer_bytes(transfer: Transfer, items: int) -> float:
    """One item's share of an answer's wire bytes, response headers excluded."""
    return max(transfer.bytes_down - HTTP_OVERHEAD_DOWN, 0) / max(items, 1)
