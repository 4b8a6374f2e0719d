"""Plans for models called whole (embeddings, VQA): candidates, costs, privacy, a pure choice.

Made-up profiles and link states, so each number can be checked by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tierwise.config import ClusterSpec, Policy, default_spec, parse_spec
from tierwise.errors import NoFeasiblePlan
from tierwise.placement.cost import (
    HTTP_OVERHEAD_DOWN,
    HTTP_OVERHEAD_UP,
    LOCAL_CALL_S,
    LiveState,
    PlanTable,
    build_whole_table,
)
from tierwise.placement.planner import decide
from tierwise.placement.plans import whole_plans
from tierwise.placement.profiles import ANY_NODE, CALL_MS, MODEL_ACCURACY, OUT_BYTES, Profiles


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    """The default cluster (MiniLM on the device and the edge) plus a VQA net on both."""
    raw = default_spec().model_dump(mode="json")
    raw["models"]["vqa-net"] = {"kind": "vqa-net", "path": "models/vqa-net.npz"}
    for node in raw["nodes"][:2]:
        node["models"].append("vqa-net")
    return parse_spec(raw, "test")


@pytest.fixture
def profiles() -> Profiles:
    p = Profiles()
    for model, device_ms, edge_ms, out in (("minilm", 60.0, 15.0, 2200.0), ("vqa-net", 8, 2, 300)):
        p.set("device", model, CALL_MS, device_ms)
        p.set("edge", model, CALL_MS, edge_ms)
        p.set(ANY_NODE, model, OUT_BYTES, out)
    p.set(ANY_NODE, "vqa-net", MODEL_ACCURACY, 0.9)
    return p


def _live(table: PlanTable, bandwidth: float, rtt: float = 0.02) -> LiveState:
    n, m = len(table.links), len(table.nodes)
    return LiveState(
        np.full(n, bandwidth), np.full(n, rtt), np.ones(n, bool), np.zeros(m), np.ones(m, bool)
    )


def _embed_table(spec: ClusterSpec, profiles: Profiles, items: int = 2) -> PlanTable:
    plans = whole_plans(spec, ["minilm"], "device", "embed", "prompt")
    return build_whole_table(spec, plans, profiles, items, request_bytes=500)


def test_a_whole_model_runs_on_each_node_that_hosts_it(spec: ClusterSpec) -> None:
    plans = whole_plans(spec, ["minilm"], "device", "embed", "prompt")
    assert [p.id for p in plans] == ["embed@device/minilm", "embed@edge/minilm"]
    local, edge = plans
    assert (local.link, local.sends, local.tail_node) == (None, "nothing", "device")
    assert (edge.link, edge.sends, edge.tiers) == ("device-edge", "prompt", ("edge",))
    vqa = whole_plans(spec, ["vqa-net"], "device", "vqa", "raw")
    assert [(p.id, p.sends) for p in vqa] == [
        ("vqa@device/vqa-net", "nothing"),
        ("vqa@edge/vqa-net", "raw"),
    ]


def test_costs_are_compute_per_item_plus_the_bytes_each_call_moves(
    spec: ClusterSpec, profiles: Profiles
) -> None:
    table = _embed_table(spec, profiles, items=2)
    np.testing.assert_allclose(table.compute_s, [0.120, 0.030])
    np.testing.assert_allclose(table.bytes_up, [0, 500 + HTTP_OVERHEAD_UP])
    np.testing.assert_allclose(table.bytes_down, [0, 2 * 2200 + HTTP_OVERHEAD_DOWN])
    latency, usd, joules = table.predict(_live(table, 1e6, rtt=0.02))
    moved = 500 + HTTP_OVERHEAD_UP + 2 * 2200 + HTTP_OVERHEAD_DOWN
    np.testing.assert_allclose(latency, [0.120 + LOCAL_CALL_S, 0.030 + moved / 1e6 + 0.02])
    assert usd[0] == 0.0 and usd[1] > 0  # the edge's compute is priced, the device's is not
    assert joules[1] > joules[0]  # a 450 W edge against a 10 W board
    assert np.isnan(table.quality).all()  # an embedding has no accuracy to meet
    vqa = build_whole_table(
        spec, whole_plans(spec, ["vqa-net"], "device", "vqa", "raw"), profiles, 1, 900
    )
    assert list(vqa.quality) == [0.9, 0.9] and list(vqa.sends_raw) == [False, True]


def test_the_link_decides_where_an_embedding_runs(spec: ClusterSpec, profiles: Profiles) -> None:
    table = _embed_table(spec, profiles)
    fast = decide(table, _live(table, 5e6), Policy(), budget_ok=True)
    slow = decide(table, _live(table, 20e3), Policy(), budget_ok=True)
    assert table.plans[fast.best].id == "embed@edge/minilm"
    assert table.plans[slow.best].id == "embed@device/minilm"


@pytest.mark.parametrize(
    "privacy", ["raw-stays-local", "pii-stays-local", "redact", "features-may-leave"]
)
def test_texts_and_images_stay_on_the_device_when_the_policy_says_so(
    spec: ClusterSpec, profiles: Profiles, privacy: str
) -> None:
    policy = Policy.model_validate({"privacy": privacy})
    embed = _embed_table(spec, profiles)
    vqa = build_whole_table(
        spec, whole_plans(spec, ["vqa-net"], "device", "vqa", "raw"), profiles, 1, 900
    )
    for table, local in ((embed, "embed@device/minilm"), (vqa, "vqa@device/vqa-net")):
        decision = decide(table, _live(table, 5e6), policy, budget_ok=True)
        assert [table.plans[i].id for i in decision.ranking] == [local]


def test_an_image_the_device_cannot_answer_is_refused_under_raw_stays_local(
    spec: ClusterSpec, profiles: Profiles
) -> None:
    raw = spec.model_dump(mode="json")
    raw["nodes"][0]["models"].remove("vqa-net")  # only the edge answers questions now
    edge_only = parse_spec(raw, "test")
    plans = whole_plans(edge_only, ["vqa-net"], "device", "vqa", "raw")
    table = build_whole_table(edge_only, plans, profiles, 1, 900)
    with pytest.raises(NoFeasiblePlan, match="privacy: raw-stays-local"):
        decide(table, _live(table, 5e6), Policy(privacy="raw-stays-local"), budget_ok=True)


def test_an_unprofiled_node_is_not_chosen(spec: ClusterSpec, profiles: Profiles) -> None:
    fresh = Profiles.from_rows(r for r in profiles.rows() if r[:3] != ("edge", "minilm", CALL_MS))
    table = _embed_table(spec, fresh)
    assert list(table.profiled) == [True, False]
    decision = decide(table, _live(table, 5e6), Policy(), budget_ok=True)
    assert decision.ranking == [0]


def test_the_decision_is_pure_and_takes_microseconds(spec: ClusterSpec, profiles: Profiles) -> None:
    table = _embed_table(spec, profiles)
    live = _live(table, 1e6)
    first = decide(table, live, Policy(), budget_ok=True)
    profiles.set("edge", "minilm", CALL_MS, 1e6)  # the table holds what it was built from
    started = time.perf_counter()
    for _ in range(200):
        again = decide(table, live, Policy(), budget_ok=True)
    per_decision = (time.perf_counter() - started) / 200
    assert again.ranking == first.ranking
    np.testing.assert_array_equal(again.latency, first.latency)
    assert per_decision < 2e-3, per_decision  # ~30 µs unloaded; generous for a busy CI
