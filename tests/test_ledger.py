"""The ledger on a real SQLite file: records, atomic budgets under concurrency, reports."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tierwise.errors import BudgetExceeded
from tierwise.ledger.report import build_report
from tierwise.ledger.store import BudgetScope, Ledger, RequestRecord, periods


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield store
    store.close()


def _record(i: int, **fields: object) -> RequestRecord:
    base = {
        "id": f"r{i}",
        "created_at": 1_700_000_000.0 + i,
        "api_key": "k",
        "task": "classify",
        "model": "m",
        "plan": "edge/jpeg90",
        "tiers": "edge",
        "status": "ok",
    }
    return RequestRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_sqlite_runs_in_wal_mode(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_record_round_trip(ledger: Ledger) -> None:
    rec = _record(1, usd=0.25, tokens_in=7, explain={"considered": [{"plan": "x"}]}, error=None)
    ledger.record(rec)
    back = ledger.get("r1")
    assert back == rec
    assert ledger.get("nope") is None


def test_two_hundred_concurrent_requests_never_overspend(ledger: Ledger) -> None:
    """Each request holds 1.5x what it ends up costing; exactly the affordable ones run."""
    limit, cost = 1.0, 0.01
    scopes = [BudgetScope("global", "day:x", limit), BudgetScope("key:k", "month:y", 5.0)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def request(i: int) -> None:
        try:
            hold = ledger.reserve(scopes, cost * 1.5)
        except BudgetExceeded:
            with lock:
                outcomes.append("rejected")
            ledger.record(_record(i, status="rejected"))
            return
        time.sleep(0.005)
        ledger.record(_record(i, usd=cost), hold, cost)
        with lock:
            outcomes.append("ok")

    threads = [threading.Thread(target=request, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent, reserved = ledger.usage(scopes[0])
    assert reserved == 0.0
    assert spent <= limit
    assert spent == pytest.approx(outcomes.count("ok") * cost)
    assert outcomes.count("ok") >= 60  # holds come back, so most of the budget is used
    assert ledger.count() == 200  # every request left a record
    assert ledger.usage(scopes[1])[0] == pytest.approx(spent)


def test_a_failed_reservation_holds_nothing_anywhere(ledger: Ledger) -> None:
    wide = BudgetScope("global", "day:x", 10.0)
    narrow = BudgetScope("key:k", "day:x", 0.5)
    with pytest.raises(
        BudgetExceeded, match=r"budget key:k for day:x would be exceeded: limit \$0.5000"
    ):
        ledger.reserve([wide, narrow], 0.6)
    assert ledger.usage(wide) == (0.0, 0.0)


def test_settling_replaces_the_hold_with_the_real_cost(ledger: Ledger) -> None:
    scope = BudgetScope("global", "day:x", 1.0)
    hold = ledger.reserve([scope], 0.3)
    assert ledger.usage(scope) == (0.0, 0.3)
    ledger.settle(hold, 0.1)
    assert ledger.usage(scope) == (pytest.approx(0.1), 0.0)


def test_periods_are_utc_days_and_months() -> None:
    assert periods(0.0) == ("day:1970-01-01", "month:1970-01")


def test_report_groups_and_counterfactual(ledger: Ledger) -> None:
    ledger.record(_record(1, tiers="device", usd=0.0, cloud_usd=0.002, latency_ms=100))
    ledger.record(_record(2, tiers="edge", usd=0.001, cloud_usd=0.002, latency_ms=50, tokens_in=5))
    ledger.record(_record(3, status="rejected", tiers="", plan="-"))
    report = build_report(ledger.rows())
    assert report.total.requests == 3 and report.total.served == 2
    assert report.total.usd == pytest.approx(0.001)
    assert report.total.cloud_usd == pytest.approx(0.004)
    assert report.total.savings == pytest.approx(0.003)
    assert set(report.by_tier) == {"device", "edge", "-"}
    assert report.by_status == {"ok": 2, "rejected": 1}
    assert report.by_tier["edge"].tokens_in == 5
