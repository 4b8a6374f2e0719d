"""Money is exact: the budgets and the ledger say the same, whatever happens to a request.

On a real SQLite ledger: holds with owners and expiries, charges of failed attempts,
holds a killed process left behind, the upgrade of a ledger from before holds, and
``tierwise ledger check``. On a real cluster of its own (a free device and a paid cloud,
both SmolLM2, budgets on): 100 streams cut by their client, and a burst of concurrent
chats under a short attempt timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

import tierwise
from tests.conftest import SMOLLM2_GGUF
from tests.money import assert_ledger_balances, runner, wait_for_no_holds
from tierwise.cli import app
from tierwise.config import ClusterSpec, parse_spec
from tierwise.gateway.executor import failed_attempt_usd
from tierwise.ledger.check import mismatches
from tierwise.ledger.store import BudgetScope, HoldTag, Ledger, RequestRecord, periods
from tierwise.placement.costing import Measured, cost_bound, plan_cost
from tierwise.placement.plans import Plan, chat_plans
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

POWER = {"active_watts": 10, "idle_watts": 1, "source": "test fixture"}
CLOUD_USD_PER_S = 0.00114  # the default price table's cloud compute


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield store
    store.close()


def _scopes(now: float) -> list[BudgetScope]:
    day, month = periods(now)
    return [BudgetScope("global", day, 10.0), BudgetScope("key:k", month, 1.0)]


def _record(request_id: str, now: float, usd: float, status: str = "ok") -> RequestRecord:
    return RequestRecord(request_id, now, "k", "chat", "m", "p", "cloud", status, usd_modelled=usd)


# -- the ledger ------------------------------------------------------------------------


def test_a_hold_names_its_request_owner_and_expiry(ledger: Ledger) -> None:
    now = time.time()
    hold = ledger.reserve(_scopes(now), 0.25, HoldTag("req-1", "k", "chat", "m", now), 2.0)
    (row,) = ledger.live_holds()
    assert (row["id"], row["request_id"], row["owner"]) == (hold.id, "req-1", ledger.owner)
    assert row["expires_at"] == pytest.approx(now + 2.0 + 3600.0, abs=5)
    assert ledger.usage(_scopes(now)[1]) == (0.0, 0.25)
    ledger.record(_record("req-1", now, 0.1), [hold])
    assert ledger.live_holds() == []
    assert ledger.usage(_scopes(now)[1]) == (pytest.approx(0.1), 0.0)
    assert mismatches(ledger) == []


def test_failed_attempts_stay_held_at_what_they_used_and_are_charged_with_the_record(
    ledger: Ledger,
) -> None:
    now, scopes = time.time(), _scopes(time.time())
    first = ledger.reserve(scopes, 0.3)
    ledger.keep_used(first, 0.05)  # it timed out having used $0.05
    assert ledger.usage(scopes[0]) == (0.0, pytest.approx(0.05))
    second = ledger.reserve(scopes, 0.3)
    ledger.record(_record("r", now, 0.05 + 0.02), [first, second])
    assert ledger.usage(scopes[0]) == (pytest.approx(0.07), 0.0)
    assert ledger.get("r").usd_modelled == pytest.approx(0.07)  # type: ignore[union-attr]
    assert mismatches(ledger) == []


def test_a_killed_processs_holds_are_released_and_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    now = time.time()
    day, _ = periods(now)
    # A real process takes two holds (one already shrunk to what its attempt used), then
    # is killed with SIGKILL: it never records its request.
    code = (
        "import os, signal, sys\n"
        "from tierwise.ledger.store import BudgetScope, HoldTag, Ledger\n"
        f"ledger = Ledger({url!r})\n"
        f"scopes = [BudgetScope('global', {day!r}, 10.0)]\n"
        f"tag = HoldTag('req-dead', 'k', 'chat', 'smollm2', {now!r})\n"
        "ledger.keep_used(ledger.reserve(scopes, 0.5, tag), 0.125)\n"
        "ledger.reserve(scopes, 0.25, tag)\n"
        "print(ledger.owner, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    here = {**os.environ, "PYTHONPATH": str(Path(tierwise.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=here)
    assert done.returncode == -9, done.stderr
    dead_owner = done.stdout.strip()
    ledger = Ledger(url)
    alive = ledger.reserve([BudgetScope("global", day, 10.0)], 0.01)  # ours: alive
    assert len(ledger.live_holds()) == 3
    (released,) = ledger.reconcile()
    assert released.request_id == "req-dead" and released.owner == dead_owner
    assert (released.held_usd, released.charged_usd) == (pytest.approx(0.375), 0.125)
    assert [h["id"] for h in ledger.live_holds()] == [alive.id]
    (row,) = [r for r in ledger.rows() if r["status"] == "abandoned"]
    assert row["usd_modelled"] == 0.125 and row["api_key"] == "k" and row["task"] == "chat"
    assert dead_owner in row["error"] and ledger.owner in row["error"]
    assert ledger.usage(BudgetScope("global", day, 10.0)) == (0.125, pytest.approx(0.01))
    assert mismatches(ledger) == []
    assert ledger.reconcile() == []  # once
    ledger.close()


def test_an_expired_hold_is_released_even_if_its_owner_lives(ledger: Ledger) -> None:
    now = time.time()
    ledger.reserve(_scopes(now), 0.2, HoldTag("req-2", "k", "chat", "m", now), 1.0)
    assert ledger.reconcile() == []  # alive, and not expired
    (released,) = ledger.reconcile(now=now + 3602.0)
    assert released.request_id == "req-2" and released.charged_usd == 0.0
    assert ledger.live_holds() == [] and mismatches(ledger) == []


def test_a_ledger_from_before_holds_is_upgraded_and_its_leaked_reservations_released(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Ledger(url)
    scope = _scopes(time.time())[0]
    old.reserve([scope], 0.4)
    with old.engine.begin() as conn:  # what an older release left: no holds table
        conn.execute(text("DROP TABLE holds"))
    old.close()
    upgraded = Ledger(url)
    assert upgraded.usage(scope) == (0.0, 0.0)
    (row,) = upgraded.rows()
    assert row["status"] == "released" and "$0.400000000" in row["error"]
    assert upgraded.live_holds() == [] and mismatches(upgraded) == []
    upgraded.close()


def test_ledger_check_prints_a_table_and_names_a_mismatch(ledger: Ledger) -> None:
    now = time.time()
    hold = ledger.reserve(_scopes(now), 0.3)
    ledger.record(_record("r1", now, 0.1), [hold])
    ledger.reserve(_scopes(now), 0.2)  # in flight
    output = assert_ledger_balances(ledger.url)
    assert "key:k" in output and "global" in output
    with ledger.engine.begin() as conn:  # a charge the ledger has no record of
        conn.execute(text("UPDATE budget_usage SET spent_nusd = spent_nusd + 7"))
    result = runner.invoke(app, ["ledger", "check", "--ledger", ledger.url])
    assert result.exit_code == 1
    assert "mismatch: global day:" in result.output
    assert "spent $0.100000007 but its records charge $0.100000000" in result.output


# -- prices ------------------------------------------------------------------------------


def _remote_spec() -> ClusterSpec:
    return parse_spec(
        {
            "name": "remote-prices",
            "variants_dir": None,
            "codecs_dir": None,
            "models": {
                "smollm2": {"kind": "llama-cpp", "gguf": SMOLLM2_GGUF},
                "gpt": {
                    "kind": "openai-remote",
                    "base_url": "http://127.0.0.1:9/v1",
                    "remote_model": "gpt-x",
                },
            },
            "prices": {"tokens": {"gpt": {"input": 1.0, "output": 2.0, "source": "test"}}},
            "nodes": [
                {"name": "device", "tier": "device", "models": ["smollm2"], "power": POWER},
                {"name": "cloud", "tier": "cloud", "models": ["gpt", "smollm2"], "power": POWER},
            ],
            "links": [{"a": "device", "b": "cloud", "medium": "ethernet"}],
        },
        "remote prices test spec",
    )


def _plan(spec: ClusterSpec, plan_id: str) -> Plan:
    return next(p for p in chat_plans(spec, ["gpt", "smollm2"], "device") if p.id == plan_id)


def test_a_remote_api_model_is_charged_its_tokens_not_its_nodes_waiting() -> None:
    spec = _remote_spec()
    waited = Measured(latency_s=3.0, tail_compute_s=3.0, tokens_in=40, tokens_out=30)
    remote, local = _plan(spec, "chat@cloud/gpt"), _plan(spec, "chat@cloud/smollm2")
    tokens = (40 * 1.0 + 30 * 2.0) / 1e6
    assert plan_cost(spec, remote, waited)[0] == pytest.approx(tokens, abs=1e-12)
    assert plan_cost(spec, local, waited)[0] == pytest.approx(3.0 * CLOUD_USD_PER_S)
    assert cost_bound(spec, remote, 10.0, 0, 0, 40, 30) == pytest.approx(tokens)
    # An attempt that gave no answer: the cloud's seconds are charged, a remote's unknown
    # tokens are not.
    assert failed_attempt_usd(spec, local, 2.0) == pytest.approx(2.0 * CLOUD_USD_PER_S)
    assert failed_attempt_usd(spec, remote, 2.0) == 0.0


# -- a cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """SmolLM2 on a free device and on a paid cloud; a key with a budget and a global
    one, so every cloud attempt takes a hold; attempts time out after 2 s."""
    spec = parse_spec(
        {
            "name": "money",
            "variants_dir": None,
            "codecs_dir": None,
            "models": {"smollm2": {"kind": "llama-cpp", "gguf": SMOLLM2_GGUF}},
            "nodes": [
                {"name": "device", "tier": "device", "models": ["smollm2"], "power": POWER},
                {"name": "cloud", "tier": "cloud", "models": ["smollm2"], "power": POWER},
            ],
            "links": [
                {"a": "device", "b": "cloud", "emulate": {"bandwidth": "10MB/s", "rtt": "5ms"}}
            ],
            "gateway": {
                "api_keys": [
                    {"name": "payer", "key_env": "TW_MONEY_KEY", "budget": {"daily_usd": 5.0}}
                ],
                "budget": {"daily_usd": 20.0, "monthly_usd": 100.0},
                "attempt_timeout": "2s",
            },
        },
        "money test spec",
    )
    cluster = LocalCluster(spec, tmp_path_factory.mktemp("money"))
    cluster.start()
    yield cluster
    cluster.stop()


def _headers(cluster: LocalCluster, plan: str | None = None) -> dict[str, str]:
    key = read_api_key(cluster.state.state_dir, "payer")
    pinned = {"X-Tierwise-Plan": plan} if plan else {}
    return {"Authorization": f"Bearer {key}", **pinned}


COUNT_PROMPT = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]


async def _cut_one(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """Open a stream, read its first token, and hang up. Returns the request id.

    A stream that cannot be opened (the node busy past the attempt timeout, then briefly
    marked down) is not a cut stream: wait and open another. The answer asked for is long,
    so that it is still being generated when the client hangs up (a short one may be
    whole in the socket's buffers by then, and rightly recorded ``ok``)."""
    body = {"model": "smollm2", "max_tokens": 1000, "stream": True, "messages": COUNT_PROMPT}
    deadline = time.monotonic() + 60
    while True:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code == 200:
                async for line in r.aiter_lines():
                    delta = (
                        json.loads(line[6:])["choices"][0]["delta"] if line[:7] == "data: {" else {}
                    )
                    if delta.get("content"):
                        return r.headers["X-Tierwise-Request-Id"]
                raise AssertionError("the stream ended before its first token")
            await r.aread()
            assert r.status_code in (404, 503) and time.monotonic() < deadline, r.text
        await asyncio.sleep(0.5)


def _cancelled_rows(url: str, ids: set[str], seconds: float = 30.0) -> list[dict[str, Any]]:
    ledger = Ledger(url)
    deadline = time.monotonic() + seconds
    while True:
        rows = [r for r in ledger.rows() if r["id"] in ids]
        if len(rows) == len(ids) or time.monotonic() > deadline:
            ledger.close()
            return rows
        time.sleep(0.2)


def test_one_hundred_streams_cut_by_their_client_are_recorded_cancelled(
    paid: LocalCluster,
) -> None:
    headers = _headers(paid, "chat@cloud/smollm2")  # paid: each stream takes a hold

    async def cut_all() -> list[str]:
        async with httpx.AsyncClient(base_url=paid.state.gateway_url, timeout=60) as client:
            gate = asyncio.Semaphore(4)

            async def one() -> str:
                async with gate:
                    return await _cut_one(client, headers)

            return await asyncio.gather(*(one() for _ in range(100)))

    started = time.monotonic()
    cut = asyncio.run(cut_all())
    ids = set(cut)
    rows = _cancelled_rows(paid.state.ledger_url, ids)
    seconds = time.monotonic() - started
    print(f"100 streams cut: {len(ids)} opened and cut, {len(rows)} recorded in {seconds:.1f} s")
    assert len(ids) == 100
    odd = [(r["status"], r["tokens_out"], r["error"]) for r in rows if r["status"] != "cancelled"]
    assert len(rows) == 100 and odd == []
    assert all(r["tokens_out"] >= 1 and r["usd_modelled"] > 0 for r in rows)
    assert all("client disconnected" in r["error"] for r in rows)
    wait_for_no_holds(paid.state.ledger_url)
    assert_ledger_balances(paid.state.ledger_url)


def test_a_burst_under_a_short_timeout_charges_what_timed_out_attempts_used(
    paid: LocalCluster,
) -> None:
    body = {"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
    cloud, any_plan = _headers(paid, "chat@cloud/smollm2"), _headers(paid)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=paid.state.gateway_url, timeout=120, limits=limits
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions", json=body, headers=cloud if i % 2 else any_plan
                    )
                    for i in range(50)
                )
            )

    started = time.time()
    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    ledger = Ledger(paid.state.ledger_url)
    ids = {r.json()["tierwise"]["request_id"] for r in responses if r.status_code == 200}
    rows = [r for r in ledger.rows(since=started) if r["status"] in ("ok", "error")]
    ledger.close()
    timed_out = [r for r in rows if '"outcome": "timeout"' in r["explain"]]
    print(
        f"burst of 50: {statuses.count(200)} answered, {statuses.count(503)} failed; "
        f"{len(timed_out)} records with a timed-out attempt, charged "
        f"${sum(r['usd_modelled'] for r in timed_out):.6f}"
    )
    assert set(statuses) <= {200, 503}, {s for s in statuses if s not in (200, 503)}
    assert ids <= {r["id"] for r in rows}
    assert timed_out, "no attempt timed out: the burst did not load the cloud node"
    # A timed-out cloud attempt used up to 2 s of cloud compute, and is charged for it.
    assert all(r["usd_modelled"] >= CLOUD_USD_PER_S for r in timed_out)
    wait_for_no_holds(paid.state.ledger_url)
    assert_ledger_balances(paid.state.ledger_url)


def test_the_holds_of_a_killed_gateway_are_released_by_the_next_one(paid: LocalCluster) -> None:
    """Last in this module: it kills the module cluster's gateway."""
    url = paid.state.ledger_url
    # long enough that the answer is still streaming when the gateway dies
    body = {"model": "smollm2", "max_tokens": 1000, "stream": True, "messages": COUNT_PROMPT}
    headers = _headers(paid, "chat@cloud/smollm2")
    ledger = Ledger(url)
    with httpx.Client(base_url=paid.state.gateway_url, timeout=60) as client:
        deadline = time.monotonic() + 90
        while True:  # the cloud node may still be busy with an earlier burst's answers
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                if r.status_code != 200 and time.monotonic() < deadline:
                    r.read()
                    time.sleep(1.0)
                    continue
                assert r.status_code == 200, r.read()
                request_id = r.headers["X-Tierwise-Request-Id"]
                next(r.iter_lines())  # the stream is open, its hold live
                (hold,) = ledger.live_holds()
                assert hold["request_id"] == request_id
                gateway = paid.child("gateway").process
                gateway.kill()  # SIGKILL: no chance to record anything
                gateway.wait()
                break
    left = [h["request_id"] for h in ledger.live_holds()]
    # (seen once in a full `make test` on a loaded machine: no hold left here; the row
    # says whether the answer had been recorded before the kill landed)
    assert left == [request_id], [r for r in ledger.rows() if r["id"] == request_id]
    # What a restarted gateway does before it serves (Gateway.start).
    (released,) = ledger.reconcile()
    assert released.request_id == request_id and released.owner == hold["owner"]
    (row,) = [r for r in ledger.rows() if r["status"] == "abandoned"]
    assert row["explain"] and request_id in row["explain"] and hold["owner"] in row["error"]
    ledger.close()
    wait_for_no_holds(url, seconds=0)
    assert_ledger_balances(url)
