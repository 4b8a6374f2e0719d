"""Prometheus metrics of the gateway, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "tierwise_gateway_requests",
            "Requests by outcome",
            ["task", "tier", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tierwise_gateway_latency_seconds",
            "End-to-end latency",
            ["task", "tier", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.usd = Counter(
            "tierwise_gateway_usd_modelled",
            "Dollars spent, modelled from the price tables",
            ["tier", "model"],
            registry=r,
        )
        self.joules = Counter(
            "tierwise_gateway_joules_modelled",
            "Energy used, modelled as stated watts x seconds plus radio J/byte",
            ["tier", "model"],
            registry=r,
        )
        self.tokens = Counter(
            "tierwise_gateway_tokens", "Tokens by model", ["tier", "model", "kind"], registry=r
        )
        self.bytes = Counter(
            "tierwise_gateway_link_bytes", "Bytes over links", ["direction"], registry=r
        )
        self.plans = Counter("tierwise_gateway_plans", "Chosen plans", ["plan"], registry=r)
        self.fallbacks = Counter(
            "tierwise_gateway_fallbacks", "Attempts that failed over to the next plan", registry=r
        )
        self.planner = Histogram(
            "tierwise_gateway_planner_seconds",
            "Time to choose a plan",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
            registry=r,
        )
        self.budget_remaining = Gauge(
            "tierwise_gateway_budget_remaining_usd_modelled",
            "Budget left, of modelled charges",
            ["scope", "period"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
