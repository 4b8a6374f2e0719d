"""What the gateway knows right now: link estimates, node health, work in flight.

Links learn passively from every call that crosses them. A link that has been idle
for ``probe_after_idle`` seconds gets a light active probe: one ``/healthz`` round trip
(RTT) and one 16 KiB ``/v1/probe`` upload (bandwidth) to a node beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tierwise.config import ClusterSpec, Tier
from tierwise.errors import UpstreamError
from tierwise.net.estimator import LinkEstimator
from tierwise.placement.cost import LiveState, PlanTable
from tierwise.runtime.node_client import NodeClient

log = logging.getLogger("tierwise.gateway")
PROBE_BYTES = 16 * 1024
NODE_BACKOFF_S = 2.0
#: A bandwidth estimate moving by more than this share makes the other links re-probe.
SHARP_CHANGE = 0.5
#: A probe raising its link's estimate by more than this share is followed by another
#: at once, to confirm the recovery.
CONFIRM_CHANGE = 0.1


@dataclass
class NodeHealth:
    inflight: int = 0
    service_s: float = 0.0  # recent compute time per call, for queueing estimates
    down_until: float = -1e9


@dataclass
class LiveView:
    spec: ClusterSpec
    client_tier: Tier
    clients: dict[str, NodeClient]  # node name → client, as reached from client_tier
    clock: Callable[[], float]
    probe_after_idle: float
    links: dict[str, LinkEstimator] = field(default_factory=dict)
    nodes: dict[str, NodeHealth] = field(default_factory=dict)
    link_inflight: dict[str, int] = field(default_factory=dict)
    _probing: set[str] = field(default_factory=set)
    _unconfirmed: dict[str, float] = field(default_factory=dict)  # link → since when
    _again: set[str] = field(default_factory=set)  # links to probe once more
    _background: set[asyncio.Task[bool]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.links = {lk.name: LinkEstimator(self.clock) for lk in self.spec.links}
        # A link away from the client's tier (edge–cloud, for a device gateway) cannot be
        # probed from here; only the second hops of three-tier plans measure it. Until
        # they do, an emulated link is what its emulation declares.
        for lk in self.spec.links:
            if self.client_tier not in (lk.a, lk.b) and lk.emulate is not None:
                self.links[lk.name].seed(lk.emulate.bandwidth, lk.emulate.rtt)
        self.nodes = {n.name: NodeHealth() for n in self.spec.nodes}
        self.link_inflight = {lk.name: 0 for lk in self.spec.links}

    # -- the planner's view ------------------------------------------------------

    def state(self, table: PlanTable) -> LiveState:
        now = self.clock()
        bandwidth = np.ones(len(table.links))
        rtt = np.zeros(len(table.links))
        up = np.zeros(len(table.links), dtype=bool)
        for i, name in enumerate(table.links):
            est = self.links[name]
            if est.ready:
                bandwidth[i], rtt[i] = est.bandwidth, est.rtt
                up[i] = est.is_up() and name not in self._unconfirmed
        queue = np.array([self.nodes[n].inflight * self.nodes[n].service_s for n in table.nodes])
        node_up = np.array([now >= self.nodes[n].down_until for n in table.nodes])
        return LiveState(bandwidth, rtt, up, queue, node_up)

    def offline(self) -> bool:
        """True when no link out of the client's tier is usable."""
        return not any(
            est.is_up() and est.ready
            for name, est in self.links.items()
            if self.client_tier in (self.spec.link(name).a, self.spec.link(name).b)
        )

    # -- what calls report ---------------------------------------------------------

    def observe(self, link: str, nbytes: int, seconds: float, server_s: float) -> None:
        """Teach a link from a call. A sharp change there gets the other links re-probed,
        since a client whose connectivity changed has usually changed it on every path;
        after a sharp drop they sit out until their probe answers."""
        est = self.links[link]
        before = est.bandwidth
        est.observe(nbytes, seconds, server_s)
        self._after_sample(link, before)

    def _after_sample(self, link: str, before: float | None) -> None:
        after = self.links[link].bandwidth
        if not before or not after or abs(after / before - 1) <= SHARP_CHANGE:
            return
        now = self.clock()
        for other in self.links:
            if other == link or self._far_node(other) is None:
                continue
            if after < before:
                self._unconfirmed[other] = now
            self._probe_soon(other)

    def _probe_soon(self, link: str) -> None:
        """Probe now, or right after the probe already in flight (which began too early)."""
        if link in self._probing:
            self._again.add(link)
            return
        task = asyncio.get_running_loop().create_task(self.probe(link))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def node_failed(self, node: str) -> None:
        self.nodes[node].down_until = self.clock() + NODE_BACKOFF_S

    def node_served(self, node: str, compute_s: float) -> None:
        health = self.nodes[node]
        health.down_until = -1e9
        health.service_s = (
            compute_s if health.service_s == 0 else 0.8 * health.service_s + 0.2 * compute_s
        )

    # -- probing ----------------------------------------------------------------------

    async def probe_idle_links(self) -> None:
        """Probe each idle link; a link in back-off waits until its back-off ends."""
        for name, est in self.links.items():
            idle = est.idle_for() >= self.probe_after_idle
            if idle and est.is_up() and self.link_inflight[name] == 0 and name not in self._probing:
                await self.probe(name)

    async def probe(self, link_name: str) -> bool:
        """One RTT and one bandwidth sample through ``link_name``; False if unreachable."""
        target = self._far_node(link_name)
        if target is None or link_name in self._probing:
            return False
        self._probing.add(link_name)
        started = self.clock()
        est = self.links[link_name]
        try:
            client = self.clients[target]
            est.observe_rtt(await client.health_rtt())
            transfer = await client.probe(PROBE_BYTES)
            before = est.bandwidth
            est.observe(transfer.bytes_up + transfer.bytes_down, transfer.seconds)
            after = est.bandwidth
            if before and after and after > before * (1 + CONFIRM_CHANGE):
                # good news is believed on the second sample that agrees (bad news at
                # once): take it now rather than after another idle spell, requests later
                self._again.add(link_name)
            # a probe that finds the link changed is news for the other paths too
            self._after_sample(link_name, before)
            return True
        except UpstreamError:
            est.failure()
            return False
        finally:
            self._probing.discard(link_name)
            if self._unconfirmed.get(link_name, float("inf")) <= started:
                del self._unconfirmed[link_name]  # a probe begun after the doubt settles it
            if link_name in self._again:
                self._again.discard(link_name)
                self._probe_soon(link_name)

    async def run_prober(self, period: float = 0.1) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.probe_idle_links()
            await asyncio.sleep(period)

    def _far_node(self, link_name: str) -> str | None:
        link = self.spec.link(link_name)
        far = (
            link.b if link.a == self.client_tier else link.a if link.b == self.client_tier else None
        )
        if far is None:
            return None
        candidates = [n.name for n in self.spec.nodes_in(far)]
        return candidates[0] if candidates else None
