"""What a chat answer teaches: the node's speed, the link's, and the model's decode rate."""

from __future__ import annotations

from typing import Any

from tierwise.gateway.pipeline import Shared
from tierwise.models.base import Usage
from tierwise.placement.costing import Measured
from tierwise.placement.plans import Plan


def measured_answer(
    shared: Shared,
    plan: Plan,
    usage: Usage,
    ext: dict[str, Any],
    transfer: tuple[int, int, float],
) -> Measured:
    """What one answer measured, taught to the live view and the profiles on the way.

    ``transfer`` is (bytes up, bytes down, seconds) as the gateway saw the call."""
    assert plan.tail_node is not None
    up, down, seconds = transfer
    compute_s = float(ext.get("compute_ms", 0.0)) / 1e3
    shared.live.node_served(plan.tail_node, compute_s)
    if plan.link is not None:
        shared.live.observe(plan.link, up + down, seconds, compute_s)
    _learn(shared, plan, usage, compute_s)
    remote = plan.link is not None
    return Measured(
        seconds,
        up if remote else 0,
        down if remote else 0,
        0.0,
        compute_s,
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def _learn(shared: Shared, plan: Plan, usage: Usage, compute_s: float) -> None:
    """Answer length always; decode speed once prefill is known and the answer is long
    enough that its tokens, not the fixed overhead, dominate."""
    profiles, node, model = shared.profiles, plan.tail_node or "", plan.model
    profiles.observe(node, model, "llm:completion_tokens", usage.completion_tokens)
    prefill = profiles.get(node, model, "llm:prefill_tok_s")
    overhead = (profiles.get(node, model, "llm:overhead_ms") or 0.0) / 1e3
    if prefill and usage.completion_tokens > 4:
        decode_s = compute_s - overhead - usage.prompt_tokens / prefill
        if decode_s > 0:
            profiles.observe(node, model, "llm:decode_tok_s", usage.completion_tokens / decode_s)
