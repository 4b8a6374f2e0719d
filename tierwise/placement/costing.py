"""What a plan costs in dollars and joules, given what it moved and computed.

The planner calls :func:`plan_cost` with predicted quantities, the gateway with
measured ones, so predictions and records are priced by the same rules.
:func:`cost_bound` is the most an attempt can be charged, which budgets hold while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierwise.config import ClusterSpec, OpenAIRemoteModel
from tierwise.ledger.energy import compute_joules, radio_joules
from tierwise.ledger.prices import compute_usd, egress_usd, token_usd
from tierwise.placement.plans import Plan

USD_DIGITS = 9


@dataclass
class Measured:
    """What one successful attempt measured."""

    latency_s: float = 0.0
    bytes_up: int = 0  # over the link, headers included
    bytes_down: int = 0
    head_compute_s: float = 0.0  # node-reported, EMULATED slow-down included
    tail_compute_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    #: a three-tier plan's last node and second link
    last_compute_s: float = 0.0
    bytes2_up: int = 0
    bytes2_down: int = 0
    #: Compute energy measured by RAPL on every node used, when they all have it. It is
    #: reported beside the modelled joules (``joules_measured``), never mixed into them,
    #: so a figure is always one or the other.
    measured_compute_joules: float | None = None


def billed_by_tokens(spec: ClusterSpec, model: str) -> bool:
    """A remote API model (``openai-remote``): its provider bills its tokens, and the node
    that hosts it only waits on the provider, so that node's seconds are not priced."""
    return isinstance(spec.models.get(model), OpenAIRemoteModel)


def plan_cost(spec: ClusterSpec, plan: Plan, m: Measured) -> tuple[float, float]:
    """(USD, joules) of running ``plan`` with the quantities in ``m``, both modelled: the
    price tables and the stated watts applied to measured seconds, bytes and tokens.
    A remote API model is charged its tokens, not its node's compute time as well."""
    usd = joules = 0.0
    priced = not billed_by_tokens(spec, plan.model)
    for name, seconds in (
        (plan.head_node, m.head_compute_s),
        (plan.tail_node, m.tail_compute_s),
        (plan.last_node, m.last_compute_s),
    ):
        if name is not None:
            node = spec.node(name)
            usd += compute_usd(spec.prices, node, seconds) if priced else 0.0
            joules += compute_joules(node, seconds)
    usd += _link_usd(spec, plan.link, plan.tail_node, m.bytes_up, m.bytes_down)
    usd += _link_usd(spec, plan.link2, plan.last_node, m.bytes2_up, m.bytes2_down)
    for link, up, down in (
        (plan.link, m.bytes_up, m.bytes_down),
        (plan.link2, m.bytes2_up, m.bytes2_down),
    ):
        if link is not None:
            joules += radio_joules(spec.energy, spec.link(link).medium, up, down)
    usd += token_usd(spec.prices, plan.model, m.tokens_in, m.tokens_out)
    # Money is counted in whole nano-dollars everywhere (budgets are integers of them),
    # so a response, its record and the budget it was charged to always agree.
    return round(usd, USD_DIGITS), joules


def cost_bound(
    spec: ClusterSpec,
    plan: Plan,
    timeout_s: float,
    max_bytes_up: int,
    max_bytes_down: int,
    max_tokens_in: int = 0,
    max_tokens_out: int = 0,
) -> float:
    """The most an attempt can be charged: every node busy for the whole timeout, the
    largest payloads, every allowed token. Budgets hold this much while it runs."""
    usd = 0.0
    for name in (plan.head_node, plan.tail_node, plan.last_node):
        if name is not None and not billed_by_tokens(spec, plan.model):
            usd += compute_usd(spec.prices, spec.node(name), timeout_s)
    usd += _link_usd(spec, plan.link, plan.tail_node, max_bytes_up, max_bytes_down)
    usd += _link_usd(spec, plan.link2, plan.last_node, max_bytes_up, max_bytes_down)
    usd += token_usd(spec.prices, plan.model, max_tokens_in, max_tokens_out)
    return usd


def _link_usd(
    spec: ClusterSpec, link_name: str | None, far: str | None, bytes_up: float, bytes_down: float
) -> float:
    """Egress over one link: ``bytes_down`` leave the far node's tier, ``bytes_up`` the other."""
    if link_name is None or far is None:
        return 0.0
    link = spec.link(link_name)
    tail_tier = spec.node(far).tier
    client_tier = link.a if link.b == tail_tier else link.b
    return egress_usd(spec.prices, tail_tier, bytes_down) + egress_usd(
        spec.prices, client_tier, bytes_up
    )
