"""Budgets under 200 concurrent requests, and a tier dying under load, on a cluster of
its own (these tests kill nodes and spend budgets the shared cluster must keep)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SMALL_MODELS
from tests.money import assert_ledger_balances, wait_for_no_holds
from tierwise.config import parse_spec
from tierwise.ledger.store import BudgetScope, Ledger, periods
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

BUDGET_USD = 0.004
POWER = {"active_watts": 10, "idle_watts": 1, "source": "test fixture"}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    spec = parse_spec(
        {
            "name": "faults",
            "variants_dir": None,  # hermetic: no developer-made variants
            "codecs_dir": None,  # nor codecs
            "models": SMALL_MODELS,
            "nodes": [
                {
                    "name": "device",
                    "tier": "device",
                    "models": ["efficientnet-lite0"],
                    "power": POWER,
                    # slow enough that the edge is the clear choice until it dies, even
                    # when a busy machine makes the start-up profiles noisy
                    "emulate": {"speed_factor": 0.25},
                },
                {"name": "edge", "tier": "edge", "models": ["efficientnet-lite0"], "power": POWER},
                {"name": "cloud", "tier": "cloud", "models": ["smollm2"], "power": POWER},
            ],
            "links": [
                {"a": "device", "b": "edge", "emulate": {"bandwidth": "5MB/s", "rtt": "5ms"}},
                {"a": "device", "b": "cloud", "emulate": {"bandwidth": "5MB/s", "rtt": "10ms"}},
            ],
            "gateway": {
                "api_keys": [
                    {"name": "tight", "key_env": "TW_TEST_KEY", "budget": {"daily_usd": BUDGET_USD}}
                ],
                "attempt_timeout": "2s",
                "probe_after_idle": "0.5s",
            },
        },
        "fault test spec",
    )
    cluster = LocalCluster(spec, tmp_path_factory.mktemp("faults"))
    cluster.start()
    yield cluster
    cluster.stop()


def _key(cluster: LocalCluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {read_api_key(cluster.state.state_dir, 'tight')}"}


def test_two_hundred_concurrent_paid_requests_never_overspend(faults: LocalCluster) -> None:
    body = {"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {**_key(faults), "X-Tierwise-Plan": "chat@cloud/smollm2"}  # only a paid plan

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=faults.state.gateway_url, timeout=120, limits=limits
        ) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=body, headers=headers)
                    for _ in range(200)
                )
            )

    responses = asyncio.run(fire())
    # The money invariant holds whatever the answers were.
    wait_for_no_holds(faults.state.ledger_url)
    assert_ledger_balances(faults.state.ledger_url)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, {s for s in statuses if s not in (200, 429)}
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1
    refused = next(r for r in responses if r.status_code == 429)
    assert "budget" in refused.json()["error"]["message"]

    ledger = Ledger(faults.state.ledger_url)
    rows = [r for r in ledger.rows() if r["api_key"] == "tight" and r["task"] == "chat"]
    day, _ = periods(time.time())
    spent, held = ledger.usage(BudgetScope("key:tight", day, BUDGET_USD))
    ledger.close()
    print(
        f"200 concurrent: {statuses.count(200)} served, {statuses.count(429)} refused, "
        f"spent ${spent:.6f} of ${BUDGET_USD}"
    )
    assert len(rows) == 200  # every request left exactly one record
    served = [r for r in rows if r["status"] == "ok"]
    assert len(served) == statuses.count(200)
    assert sum(r["usd_modelled"] for r in rows) <= BUDGET_USD
    assert spent == pytest.approx(sum(r["usd_modelled"] for r in rows), abs=1e-9)
    assert held == 0.0  # nothing left on hold


def test_killing_the_edge_mid_run_loses_no_request(faults: LocalCluster, photo_jpeg: bytes) -> None:
    gateway = faults.state.gateway_url
    killer = threading.Timer(1.5, faults.child("edge").process.kill)
    responses = []
    with httpx.Client(base_url=gateway, headers=_key(faults), timeout=60) as client:
        killer.start()
        started = time.monotonic()
        while time.monotonic() - started < 4.0 or len(responses) < 20:
            responses.append(client.post("/v1/vision/classify", content=photo_jpeg))
        killer.join()
        assert client.get("/healthz").status_code == 200  # the gateway keeps serving
    assert all(r.status_code == 200 for r in responses), [
        r.text for r in responses if r.status_code != 200
    ]
    plans = [r.json()["tierwise"]["plan"] for r in responses]
    assert any(p.startswith(("edge/", "split@")) for p in plans)  # the edge was in use...
    assert plans[-1] == "local@device"  # ...and the device took over
    ids = {r.json()["tierwise"]["request_id"] for r in responses}
    ledger = Ledger(faults.state.ledger_url)
    recorded = {r["id"]: r for r in ledger.rows() if r["id"] in ids}
    ledger.close()
    assert set(recorded) == ids and all(r["status"] == "ok" for r in recorded.values())
    assert any(r["attempts"] > 1 for r in recorded.values()) or all(
        p == "local@device" for p in plans[len(plans) // 2 :]
    )
    wait_for_no_holds(faults.state.ledger_url)
    assert_ledger_balances(faults.state.ledger_url)
