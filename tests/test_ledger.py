"""The ledger on a real SQLite file: records, atomic budgets under concurrency, reports."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tierwise.errors import BudgetExceeded
from tierwise.ledger.report import build_report
from tierwise.ledger.store import BudgetScope, Ledger, RequestRecord, RunRecord, periods


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
    rec = _record(
        1, usd_modelled=0.25, tokens_in=7, explain={"considered": [{"plan": "x"}]}, error=None
    )
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
        ledger.record(_record(i, usd_modelled=cost), [hold])
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


def test_recording_replaces_the_hold_with_the_records_charge(ledger: Ledger) -> None:
    scope = BudgetScope("global", "day:x", 1.0)
    hold = ledger.reserve([scope], 0.3)
    assert ledger.usage(scope) == (0.0, 0.3)
    ledger.record(_record(1, usd_modelled=0.1), [hold])
    assert ledger.usage(scope) == (pytest.approx(0.1), 0.0)
    assert ledger.live_holds() == []


def test_periods_are_utc_days_and_months() -> None:
    assert periods(0.0) == ("day:1970-01-01", "month:1970-01")


def test_report_groups_and_counterfactual(ledger: Ledger) -> None:
    ledger.record(
        _record(1, tiers="device", usd_modelled=0.0, cloud_usd_modelled=0.002, latency_ms=100)
    )
    ledger.record(
        _record(
            2,
            tiers="edge",
            usd_modelled=0.001,
            cloud_usd_modelled=0.002,
            latency_ms=50,
            tokens_in=5,
        )
    )
    ledger.record(_record(3, status="rejected", tiers="", plan="-"))
    report = build_report(ledger.rows())
    assert report.total.requests == 3 and report.total.served == 2
    assert report.total.usd == pytest.approx(0.001)
    assert report.total.cloud_usd == pytest.approx(0.004)
    assert report.total.savings == pytest.approx(0.003)
    assert set(report.by_tier) == {"device", "edge", "-"}
    assert report.by_status == {"ok": 2, "rejected": 1}
    assert report.by_tier["edge"].tokens_in == 5


def test_a_run_and_its_steps_round_trip(ledger: Ledger) -> None:
    run = RunRecord("run-1", time.time(), "k", "What is in example.jpg?", "learned", "ok")
    run.usd_modelled, run.answer, run.explain = 2e-6, "A cat.", {"graph": {"task_nodes": []}}
    ledger.record_run(run)
    for i, run_id in enumerate(("run-1", "run-1", None)):
        ledger.record(_record(i, usd_modelled=1e-6, run_id=run_id))
    found = ledger.get_run("run-1")
    assert found is not None
    got, steps = found
    assert got == run
    assert [s.id for s in steps] == ["r0", "r1"]
    assert ledger.get_run("nope") is None


def test_a_ledger_from_before_runs_gets_the_run_id_and_labelled_cost_columns(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the requests table as the first release wrote it
        db.execute(
            "CREATE TABLE requests (id VARCHAR(40) PRIMARY KEY, created_at FLOAT NOT NULL, "
            "day VARCHAR(10) NOT NULL, api_key VARCHAR(64) NOT NULL, task VARCHAR(32) NOT NULL, "
            "model VARCHAR(64) NOT NULL, plan VARCHAR(128) NOT NULL, tiers VARCHAR(64) NOT NULL, "
            "tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, bytes_up INTEGER NOT NULL, "
            "bytes_down INTEGER NOT NULL, latency_ms FLOAT NOT NULL, "
            "predicted_latency_ms FLOAT NOT NULL, usd FLOAT NOT NULL, "
            "predicted_usd FLOAT NOT NULL, "
            "cloud_usd FLOAT NOT NULL, joules FLOAT NOT NULL, predicted_joules FLOAT NOT NULL, "
            "quality FLOAT, status VARCHAR(16) NOT NULL, offline BOOLEAN NOT NULL, "
            "attempts INTEGER NOT NULL, error TEXT, explain TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO requests VALUES ('old', 1.0, '1970-01-01', 'k', 'chat', 'm', 'p', "
            "'device', 0, 0, 0, 0, 1.0, 1.0, 0.25, 0, 0, 2.0, 0, NULL, 'ok', 0, 1, NULL, '{}')"
        )
    ledger = Ledger(f"sqlite:///{path}")
    try:
        old = ledger.get("old")
        assert old is not None and old.run_id is None
        # its cost columns now say they are modelled, with their values kept
        assert old.usd_modelled == 0.25 and old.joules_modelled == 2.0
        assert old.joules_measured is None
        new = _record(2, run_id="run-9")
        ledger.record(new)
        assert ledger.get("r2") == new
    finally:
        ledger.close()
    Ledger(f"sqlite:///{path}").close()  # opening again changes nothing
    # and the upgrade left the process's schema as it was: a fresh ledger still opens
    Ledger(f"sqlite:///{tmp_path / 'fresh.db'}").close()
