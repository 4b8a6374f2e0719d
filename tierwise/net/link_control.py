"""The control API of one link proxy, used by ``tierwise link set|down|up|show``.

GET  /healthz          open
GET  /v1/link          settings, counters and forwarding ports
PUT  /v1/link          change bandwidth / downlink / rtt / loss (any subset)
POST /v1/link/down     take the link offline: open connections are cut, new ones refused
POST /v1/link/up       bring it back
GET  /metrics          Prometheus: bytes per direction, connections, settings
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tierwise.net.http_common import BearerAuth, install_error_handlers
from tierwise.net.link_proxy import LinkProxy
from tierwise.units import parse_duration, parse_rate


class LinkUpdate(BaseModel):
    """Any subset of the emulated settings; strings take units ("300KB/s", "30ms")."""

    model_config = ConfigDict(extra="forbid")

    bandwidth: float | None = Field(None, gt=0)
    downlink: float | None = Field(None, gt=0)
    rtt: float | None = Field(None, ge=0, le=60)
    loss: float | None = Field(None, ge=0, lt=1)

    @field_validator("bandwidth", "downlink", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        return parse_rate(value) if isinstance(value, str) else value

    @field_validator("rtt", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


def link_status(proxy: LinkProxy) -> dict[str, Any]:
    s, c = proxy.settings, proxy.counters
    return {
        "name": proxy.name,
        "emulated": True,
        "online": s.online,
        "bandwidth": s.bandwidth,
        "downlink": s.downlink,
        "rtt": s.rtt,
        "loss": s.loss,
        "bytes_up": c.bytes_up,
        "bytes_down": c.bytes_down,
        "connections_total": c.connections_total,
        "connections_refused": c.connections_refused,
        "forward_ports": proxy.bound_ports,
    }


def create_link_app(proxy: LinkProxy, token: str | None) -> FastAPI:
    app = FastAPI(title=f"tierwise link {proxy.name} (EMULATED)")
    install_error_handlers(app)
    app.add_middleware(BearerAuth, token=token, open_paths=frozenset({"/healthz"}))
    registry = CollectorRegistry()
    registry.register(_LinkCollector(proxy))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "link": proxy.name}

    @app.get("/v1/link")
    async def show() -> dict[str, Any]:
        return link_status(proxy)

    @app.put("/v1/link")
    async def update(body: LinkUpdate) -> dict[str, Any]:
        proxy.update(body.bandwidth, body.downlink, body.rtt, body.loss)
        return link_status(proxy)

    @app.post("/v1/link/down")
    async def down() -> dict[str, Any]:
        proxy.set_down()
        return link_status(proxy)

    @app.post("/v1/link/up")
    async def up() -> dict[str, Any]:
        proxy.set_up()
        return link_status(proxy)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return app


class _LinkCollector:
    """Reads the proxy's live counters at scrape time."""

    def __init__(self, proxy: LinkProxy) -> None:
        self.proxy = proxy

    def collect(self) -> Any:
        s, c, name = self.proxy.settings, self.proxy.counters, self.proxy.name
        moved = CounterMetricFamily(
            "tierwise_link_bytes", "Bytes forwarded", labels=["link", "direction"]
        )
        moved.add_metric([name, "up"], c.bytes_up)
        moved.add_metric([name, "down"], c.bytes_down)
        yield moved
        conns = CounterMetricFamily(
            "tierwise_link_connections", "Connections", labels=["link", "outcome"]
        )
        conns.add_metric([name, "forwarded"], c.connections_total)
        conns.add_metric([name, "refused"], c.connections_refused)
        yield conns
        setting = GaugeMetricFamily(
            "tierwise_link_emulated_setting",
            "EMULATED link settings (bytes/s, seconds, ratio, 0/1)",
            labels=["link", "setting"],
        )
        for key, value in (
            ("bandwidth", s.bandwidth),
            ("downlink", s.downlink),
            ("rtt", s.rtt),
            ("loss", s.loss),
            ("online", float(s.online)),
        ):
            setting.add_metric([name, key], value)
        yield setting
