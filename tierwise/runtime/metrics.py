"""Prometheus metrics of one node, in a registry of its own (never the global one)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tierwise.net.http_common import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NodeMetrics:
    def __init__(self, node: str, tier: str, speed_factor: float) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tierwise_node_requests", "HTTP requests served", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "tierwise_node_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tierwise_node_tokens",
            "Tokens processed, by model's own tokenizer",
            ["model", "kind"],
            registry=r,
        )
        self.compute = Counter(
            "tierwise_node_compute_seconds",
            "Model compute time, emulated slow-down included",
            ["model"],
            registry=r,
        )
        self.payload_bytes = Counter(
            "tierwise_node_payload_bytes",
            "Request and response body bytes",
            ["direction"],
            registry=r,
        )
        info = Gauge(
            "tierwise_node_speed_factor",
            "EMULATED compute speed factor (1 = not slowed)",
            ["node", "tier"],
            registry=r,
        )
        info.labels(node=node, tier=tier).set(speed_factor)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` to count requests and time them, labelled by route template.

        Pure ASGI rather than BaseHTTPMiddleware, which would wrap errors raised while a
        body is read (a 413, say) in an ExceptionGroup and turn them into 500s."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                label = getattr(scope.get("route"), "path", "unmatched")
                self.requests.labels(route=label, status=str(status)).inc()
                self.latency.labels(route=label).observe(time.perf_counter() - start)

        return counted
