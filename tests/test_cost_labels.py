"""Every dollar and joule figure tierwise reports says whether it is modelled or measured:
ledger columns, HTTP answer fields, plan explanations, reports, metrics, CLI and bench
tables. (The live answers of a real cluster are checked in test_gateway.py.)"""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest
from sqlalchemy import MetaData

from tests.cost_labels import assert_costs_labelled, is_cost, names_its_kind, unlabelled
from tierwise.config import Policy, default_spec
from tierwise.ledger import schema
from tierwise.ledger.report import Group, build_report
from tierwise.placement.cost import LiveState, build_vision_table
from tierwise.placement.planner import decide
from tierwise.placement.plans import vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric


def test_the_rule_catches_a_bare_figure() -> None:
    assert unlabelled({"measured": {"usd": 1.0, "joules_measured": None}}) == ["measured.usd"]
    assert unlabelled({"policy": {"max_usd": 1.0}, "weights": {"usd": 10}}) == []
    assert is_cost("J/req") and is_cost("$/req") and is_cost("spent J")
    assert not is_cost("KB/s") and not is_cost("jpeg90")
    assert names_its_kind("$/req modelled")


def test_ledger_columns_say_which() -> None:
    tables: MetaData = schema.metadata
    for table in tables.tables.values():
        if table.name in ("budget_usage", "holds"):
            continue  # integer nano-dollar accounting of budgets, not a reported figure
        for column in table.columns:
            if is_cost(column.name):
                assert names_its_kind(column.name), f"{table.name}.{column.name}"


def _decision():  # type: ignore[no-untyped-def]
    spec = default_spec()
    profiles = Profiles()
    for node in ("device", "edge", "cloud"):
        for i in range(6):
            profiles.set(node, "efficientnet-lite0", stage_metric(i), 5.0)
    profiles.set(ANY_NODE, "efficientnet-lite0", "out:bytes", 4000.0)
    for what, value in (("bytes", 20_000.0), ("ms", 1.0), ("agreement", 0.99)):
        profiles.set(ANY_NODE, "efficientnet-lite0", codec_metric("jpeg90", 0, what), value)
    plans = vision_plans(spec, "efficientnet-lite0", 6, "device", input_codecs=("jpeg90",))
    table = build_vision_table(spec, plans, profiles)
    n_links, n_nodes = len(table.links), len(table.nodes)
    live = LiveState(
        np.full(n_links, 1e6),
        np.full(n_links, 0.02),
        np.ones(n_links, bool),
        np.zeros(n_nodes),
        np.ones(n_nodes, bool),
    )
    return decide(table, live, Policy(), True), live


def test_answers_and_explanations_say_which() -> None:
    from tierwise.gateway.recorder import _predicted

    decision, live = _decision()
    assert_costs_labelled({"predicted": _predicted(decision, decision.best)})
    assert_costs_labelled({"considered": decision.explain(Policy(), True, live)})


def test_reports_and_metrics_say_which() -> None:
    row = {
        "status": "ok",
        "tiers": "edge",
        "model": "m",
        "day": "2026-01-01",
        "usd_modelled": 1e-6,
        "cloud_usd_modelled": 2e-6,
        "joules_modelled": 0.5,
        "tokens_in": 0,
        "tokens_out": 0,
        "bytes_up": 1,
        "bytes_down": 1,
        "latency_ms": 10.0,
    }
    assert_costs_labelled(build_report([row]).total.as_dict())
    assert_costs_labelled(Group().as_dict())
    from tierwise.gateway.metrics import GatewayMetrics

    metrics = generate_latest(GatewayMetrics().registry).decode()
    names = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")}
    assert not [n for n in names if is_cost(n) and not names_its_kind(n)]


def test_cli_and_bench_tables_say_which() -> None:
    from tierwise.bench import optimize, placement_report
    from tierwise.cli.ledger import _report_table

    report = build_report([])
    table = _report_table("t", {"all": report.total})
    headers = [str(c.header) for c in table.columns]
    for headers_of in (headers, placement_report.PLAN_HEADERS, optimize._HEADERS):
        assert not [h for h in headers_of if is_cost(h) and not names_its_kind(h)], headers_of
