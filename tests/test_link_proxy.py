"""The link-shaping proxy over real loopback sockets: rate accuracy, RTT, loss, offline."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Iterator

import pytest

from tierwise.net.link_proxy import LinkProxy, LinkSettings, Route
from tierwise.net.throughput import BulkServer, measure, measure_link_rate

pytestmark = pytest.mark.anyio

TRANSFER_SECONDS = 2.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_collector_pauses() -> Iterator[None]:
    """The proxy and its client share the test process, whose heap holds every model that
    earlier tests loaded: a full garbage collection there can stall a transfer for half a
    second, which is the test's noise, not the proxy's delay."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _proxy(server: BulkServer, settings: LinkSettings, **kwargs: object) -> LinkProxy:
    route = Route("sink", "127.0.0.1", server.port, "up")
    return LinkProxy("device-edge", settings, [route], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rate", [50e3, 200e3, 1e6, 10e6], ids=["50KB/s", "200KB/s", "1MB/s", "10MB/s"]
)
async def test_uplink_rate_within_10_percent(rate: float) -> None:
    result = await measure_link_rate(rate, rate, "up", TRANSFER_SECONDS)
    error = result.rate / rate - 1
    print(f"uplink set {rate:.0f} B/s measured {result.rate:.0f} B/s error {error:+.1%}")
    assert abs(error) <= 0.10


@pytest.mark.parametrize("rate", [50e3, 10e6], ids=["50KB/s", "10MB/s"])
async def test_downlink_rate_is_shaped_separately(rate: float) -> None:
    # Uplink is 4x the downlink: a download must still run at the downlink rate.
    result = await measure_link_rate(rate * 4, rate, "down", TRANSFER_SECONDS)
    error = result.rate / rate - 1
    print(f"downlink set {rate:.0f} B/s measured {result.rate:.0f} B/s error {error:+.1%}")
    assert abs(error) <= 0.10


async def test_byte_counters_are_exact() -> None:
    async with BulkServer() as server, _proxy(server, LinkSettings(10e6, 10e6, 0.0, 0.0)) as proxy:
        await measure("127.0.0.1", proxy.bound_ports["sink"], 123_456, "up")
        await measure("127.0.0.1", proxy.bound_ports["sink"], 7_890, "down")
    assert proxy.counters.bytes_up == 123_456 + 9 + 9  # payloads plus two 9-byte commands
    assert proxy.counters.bytes_down == 7_890 + 1  # payload plus the 1-byte upload ack
    assert proxy.counters.connections_total == 2


async def test_rtt_is_added_once_per_round_trip() -> None:
    async with (
        BulkServer() as server,
        _proxy(server, LinkSettings(10e6, 10e6, 0.100, 0.0)) as proxy,
    ):
        port = proxy.bound_ports["sink"]
        # A stall of the shared machine can only add time, never remove it, so the
        # fastest of a few tries is the proxy's own delay.
        small = min([await _seconds(port, 100) for _ in range(3)])
        # A bulk transfer pays the RTT once, not per slice: 1 MB at 10 MB/s ≈ 0.1 s + 0.1 s.
        bulk = min([await _seconds(port, 1_000_000) for _ in range(2)])
    assert 0.095 <= small <= 0.16
    assert 0.18 <= bulk <= 0.30


async def _seconds(port: int, nbytes: int) -> float:
    return (await measure("127.0.0.1", port, nbytes, "up")).seconds


async def test_live_rate_change_applies_to_the_next_transfer() -> None:
    async with BulkServer() as server, _proxy(server, LinkSettings(1e6, 1e6, 0.0, 0.0)) as proxy:
        port = proxy.bound_ports["sink"]
        proxy.update(bandwidth=100e3)
        slow = await measure("127.0.0.1", port, 200_000, "up")
    assert proxy.settings.downlink == 100e3  # bandwidth alone sets both directions
    assert abs(slow.rate / 100e3 - 1) <= 0.10


async def test_loss_costs_retransmission_time() -> None:
    settings = LinkSettings(1e6, 1e6, 0.020, 0.0)
    async with BulkServer() as server, _proxy(server, settings, rng=random.Random(7)) as proxy:
        port = proxy.bound_ports["sink"]
        clean = await measure("127.0.0.1", port, 300_000, "up")
        proxy.update(loss=0.05)
        lossy = await measure("127.0.0.1", port, 300_000, "up")
    # ~206 segments at 5% loss ≈ 10 lost, each costing one 20 ms RTT.
    assert lossy.seconds - clean.seconds >= 0.08


async def test_offline_link_cuts_open_connections_and_refuses_new_ones() -> None:
    async with BulkServer() as server, _proxy(server, LinkSettings(20e3, 20e3, 0.0, 0.0)) as proxy:
        port = proxy.bound_ports["sink"]
        slow = asyncio.create_task(measure("127.0.0.1", port, 200_000, "up"))  # ~10 s at 20 KB/s
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        proxy.set_down()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await slow
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await measure("127.0.0.1", port, 10, "up")
        assert time.perf_counter() - started < 1.0  # fails fast, never hangs
        assert proxy.counters.connections_refused >= 1
        proxy.set_up()
        proxy.update(bandwidth=1e6)
        again = await measure("127.0.0.1", port, 10_000, "up")
    assert again.nbytes == 10_000
