"""The gateway's live view: a sharp drop on one link puts the others on hold until a
probe that began after the drop has answered."""

from __future__ import annotations

import asyncio

import pytest

from tierwise.config import default_spec
from tierwise.gateway.live import LiveView
from tierwise.placement.cost import build_vision_table
from tierwise.placement.plans import vision_plans
from tierwise.placement.profiles import Profiles
from tierwise.runtime.node_client import Transfer


class SlowNode:
    """Answers probes as a node behind a link of ``rate`` bytes/s and 20 ms RTT would."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.probes = 0

    async def health_rtt(self) -> float:
        await asyncio.sleep(0.001)
        return 0.02

    async def probe(self, nbytes: int) -> Transfer:
        self.probes += 1
        await asyncio.sleep(0.01)
        return Transfer(nbytes, 100, 0.02 + (nbytes + 100) / self.rate)


def test_a_sharp_drop_holds_other_links_until_they_are_probed() -> None:
    spec = default_spec()
    nodes = {"edge": SlowNode(50e3), "cloud": SlowNode(50e3), "device": SlowNode(1e9)}
    table = build_vision_table(
        spec, vision_plans(spec, "efficientnet-lite0", 6, "device"), Profiles()
    )

    async def scenario() -> None:
        live = LiveView(spec, "device", nodes, asyncio.get_running_loop().time, 0.5)  # type: ignore[arg-type]
        for name in ("device-edge", "device-cloud"):  # both links believed fast
            est = live.links[name]
            est.observe_rtt(0.02)
            est.observe(40_000, 0.02 + 40_000 / 2e6)
        cloud = table.links.index("device-cloud")
        assert live.state(table).link_up[cloud]
        live.observe("device-edge", 22_000, 0.02 + 22_000 / 50e3 + 0.03, 0.03)  # edge collapsed
        assert live.links["device-edge"].bandwidth == pytest.approx(50e3, rel=0.05)
        assert not live.state(table).link_up[cloud]  # on hold while its probe runs
        await asyncio.sleep(0.05)
        assert nodes["cloud"].probes == 1
        assert live.state(table).link_up[cloud]
        assert live.links["device-cloud"].bandwidth == pytest.approx(50e3, rel=0.1)

    asyncio.run(scenario())


def test_a_probe_that_finds_the_link_changed_confirms_it_at_once() -> None:
    """A link believed at 50 KB/s is back at 500 KB/s: the first probe moves the estimate
    part way, and a second probe follows at once instead of after the next idle spell."""
    spec = default_spec()
    nodes = {"edge": SlowNode(500e3), "cloud": SlowNode(500e3), "device": SlowNode(1e9)}

    async def scenario() -> None:
        live = LiveView(spec, "device", nodes, asyncio.get_running_loop().time, 0.5)  # type: ignore[arg-type]
        est = live.links["device-edge"]
        est.observe_rtt(0.02)
        est.observe(40_000, 0.02 + 40_000 / 50e3)
        await live.probe("device-edge")
        await asyncio.sleep(0.2)  # well inside the 0.5 s idle period
        assert nodes["edge"].probes >= 2
        assert est.bandwidth == pytest.approx(500e3, rel=0.2)

    asyncio.run(scenario())
