"""The gateway's calls to nodes: each one counted in flight, and its failure naming the node.

In-flight counts feed the planner's queueing estimate (a busy node predicts slower) and
keep the prober off links that are carrying real traffic.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from tierwise.errors import UpstreamError
from tierwise.gateway.live import LiveView
from tierwise.runtime.node_client import NodeClient

T = TypeVar("T")


class NodeCalls:
    def __init__(self, clients: dict[str, NodeClient], live: LiveView) -> None:
        self._clients = clients
        self._live = live

    def client(self, node: str) -> NodeClient:
        return self._clients[node]

    async def call(self, node: str, link: str | None, call: Awaitable[T]) -> T:
        """Await ``call`` to ``node`` over ``link`` (None: on the gateway's own tier)."""
        health = self._live.nodes[node]
        health.inflight += 1
        if link is not None:
            self._live.link_inflight[link] += 1
        try:
            return await call
        except UpstreamError as exc:
            exc.node = node
            raise
        finally:
            health.inflight -= 1
            if link is not None:
                self._live.link_inflight[link] -= 1

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
