"""What a piece of work costs in dollars, from the prices section of the spec. Pure."""

from __future__ import annotations

from tierwise.config import NodeSpec, PricesSpec, Tier

GB = 1e9


def compute_usd(prices: PricesSpec, node: NodeSpec, seconds: float) -> float:
    return prices.compute_price(node) * max(0.0, seconds)


def egress_usd(prices: PricesSpec, tier: Tier, nbytes: float) -> float:
    """Bytes leaving a node of ``tier`` (a cloud's answer to the device, say)."""
    return prices.egress[tier].usd_per_gb * max(0.0, nbytes) / GB


def token_usd(prices: PricesSpec, model: str, tokens_in: int, tokens_out: int) -> float:
    price = prices.tokens.get(model)
    if price is None:
        return 0.0  # validation guarantees every remote (token-billed) model has a price
    return (price.input * tokens_in + price.output * tokens_out) / 1e6


def is_paid(prices: PricesSpec, node: NodeSpec, model: str) -> bool:
    """Whether running ``model`` on ``node`` can cost money at all."""
    token = prices.tokens.get(model)
    return (
        prices.compute_price(node) > 0
        or prices.egress[node.tier].usd_per_gb > 0
        or (token is not None and (token.input > 0 or token.output > 0))
    )
