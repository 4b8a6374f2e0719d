"""The planner and cost model on the default spec with made-up, known profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.plan_helpers import all_up
from tierwise.config import ObjectiveWeights, Policy, default_spec
from tierwise.errors import BudgetExceeded, NoFeasiblePlan
from tierwise.placement.cost import (
    HTTP_OVERHEAD_DOWN,
    HTTP_OVERHEAD_UP,
    LOCAL_CALL_S,
    LiveState,
    PlanTable,
    build_chat_table,
    build_vision_table,
)
from tierwise.placement.planner import decide
from tierwise.placement.plans import chat_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric

MODEL = "efficientnet-lite0"
EDGE_STAGE_MS = [5.0, 6.0, 5.0, 8.0, 8.0, 3.0]
FEATURE_BYTES = {1: 200_000, 2: 75_000, 3: 88_000, 4: 63_000, 5: 4_000}
AGREEMENT = {"raw": 1.0, "fp16": 1.0, "q8": 0.98, "q4": 0.9, "jpeg90": 0.97, "png": 1.0}
RATIO = {"raw": 1, "fp16": 2, "q8": 4, "q4": 8}


@pytest.fixture
def spec():  # type: ignore[no-untyped-def]
    return default_spec()


@pytest.fixture
def profiles() -> Profiles:
    p = Profiles()
    for node, factor in (("device", 4.0), ("edge", 1.0), ("cloud", 1.0)):
        for i, ms in enumerate(EDGE_STAGE_MS):
            p.set(node, MODEL, stage_metric(i), ms * factor)
    p.set(ANY_NODE, MODEL, "out:bytes", 4030)
    p.set(ANY_NODE, MODEL, codec_metric("original", 0, "bytes"), 60_000)  # a phone's JPEG
    for codec, size in (("jpeg90", 20_000), ("png", 100_000)):
        p.set(ANY_NODE, MODEL, codec_metric(codec, 0, "bytes"), size)
        p.set(ANY_NODE, MODEL, codec_metric(codec, 0, "ms"), 1.0)
        p.set(ANY_NODE, MODEL, codec_metric(codec, 0, "agreement"), AGREEMENT[codec])
    for split, size in FEATURE_BYTES.items():
        for codec, ratio in RATIO.items():
            p.set(ANY_NODE, MODEL, codec_metric(codec, split, "bytes"), size / ratio)
            p.set(ANY_NODE, MODEL, codec_metric(codec, split, "ms"), 0.5)
            p.set(ANY_NODE, MODEL, codec_metric(codec, split, "agreement"), AGREEMENT[codec])
    return p


def _table(spec, profiles: Profiles) -> PlanTable:  # type: ignore[no-untyped-def]
    return build_vision_table(spec, vision_plans(spec, MODEL, 6, "device"), profiles)


def _live(table: PlanTable, bandwidth: float, rtt: float = 0.02) -> LiveState:
    return all_up(table, bandwidth, rtt)


def _best(
    table: PlanTable, live: LiveState, policy: Policy | None = None, budget_ok: bool = True
) -> str:
    return table.plans[decide(table, live, policy or Policy(), budget_ok).best].id


def test_candidates_cover_local_input_and_every_split_codec(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    plans = vision_plans(spec, MODEL, 6, "device")
    ids = {p.id for p in plans}
    assert "local@device" in ids and "edge/jpeg90" in ids and "cloud/png" in ids
    assert {f"split@{k}/edge/q8" for k in range(1, 6)} <= ids
    assert "edge/original" in ids and "cloud/original" in ids
    # local + (original + 2 input + 5 splits x 4 codecs) per remote
    assert len(plans) == 1 + 2 * (3 + 5 * 4)


def test_prediction_adds_compute_transfer_and_rtt(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    live = _live(table, 1e6, 0.02)
    latency, usd, joules = table.predict(live)
    i = [p.id for p in table.plans].index("edge/jpeg90")
    expected = (
        (sum(EDGE_STAGE_MS) + 1.0) / 1e3
        + (20_000 + HTTP_OVERHEAD_UP + 4030 + HTTP_OVERHEAD_DOWN) / 1e6
        + 0.02
    )
    assert latency[i] == pytest.approx(expected)
    edge_price = spec.prices.compute["edge"].usd_per_second
    assert usd[i] == pytest.approx(edge_price * sum(EDGE_STAGE_MS) / 1e3)
    assert joules[i] > 450 * sum(EDGE_STAGE_MS) / 1e3  # edge watts x compute, plus radio
    local = [p.id for p in table.plans].index("local@device")
    assert latency[local] == pytest.approx(4 * sum(EDGE_STAGE_MS) / 1e3 + LOCAL_CALL_S)
    assert usd[local] == 0.0


def test_fast_link_goes_to_the_edge_slow_link_stays_local(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    assert _best(table, _live(table, 2e6)) == "edge/jpeg90"
    assert _best(table, _live(table, 50e3)) == "local@device"


def test_edge_only_stops_paying_near_300_kb_per_s(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    """With a 4x slower device, offloading stops paying between 200 and 300 KB/s, as the
    seed system's edge-only inference did; just above, a split with q4 features edges out
    the JPEG (9.4 KB of features against 20 KB of image)."""
    table = _table(spec, profiles)
    assert _best(table, _live(table, 2e6)) == "edge/jpeg90"
    assert _best(table, _live(table, 300e3)) == "split@2/edge/q4"
    assert _best(table, _live(table, 200e3)) == "local@device"


def test_privacy_rules(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    live = _live(table, 2e6)
    strict = decide(table, live, Policy(privacy="raw-stays-local"), True)
    assert {table.plans[i].id for i in strict.ranking} == {"local@device"}
    features = decide(table, live, Policy(privacy="features-may-leave"), True)
    assert all(table.plans[i].sends in ("nothing", "features") for i in features.ranking)
    assert table.plans[features.best].sends == "features"


def test_spent_budget_excludes_paid_plans_and_max_usd_is_hard(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    live = _live(table, 2e6)
    assert _best(table, live, budget_ok=False) == "local@device"
    assert _best(table, live, Policy(max_usd=0.0)) == "local@device"


def test_only_paid_plans_and_no_budget_is_a_429(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    plans = [p for p in vision_plans(spec, MODEL, 6, "device") if p.id != "local@device"]
    table = build_vision_table(spec, plans, profiles)
    with pytest.raises(BudgetExceeded, match="budget is exhausted"):
        decide(table, _live(table, 2e6), Policy(), budget_ok=False)


def test_impossible_policy_gets_a_clear_answer(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    plans = [p for p in vision_plans(spec, MODEL, 6, "device") if p.remote]
    table = build_vision_table(spec, plans, profiles)
    with pytest.raises(NoFeasiblePlan, match=r"privacy: raw-stays-local \(46 plans\)"):
        decide(table, _live(table, 2e6), Policy(privacy="raw-stays-local"), True)


def test_unmeetable_latency_is_relaxed_and_named(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    decision = decide(table, _live(table, 2e6), Policy(max_latency_ms=1.0), True)
    assert decision.relaxed == ["max_latency_ms"]
    assert table.plans[decision.best].id == "edge/jpeg90"  # the closest to 1 ms


def _measure_accuracy(profiles: Profiles) -> None:
    """Accuracies as if the unsplit model were always right: each codec's is its agreement."""
    profiles.set(ANY_NODE, MODEL, "model:accuracy", 1.0)
    for metric in [row[2] for row in profiles.rows() if row[2].endswith(":agreement")]:
        accuracy = profiles.get(ANY_NODE, MODEL, metric)
        assert accuracy is not None
        profiles.set(ANY_NODE, MODEL, metric.replace(":agreement", ":accuracy"), accuracy)


def test_min_quality_keeps_only_accurate_plans(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    _measure_accuracy(profiles)
    table = _table(spec, profiles)
    decision = decide(table, _live(table, 100e3), Policy(min_quality=0.99), True)
    assert decision.relaxed == []
    assert all(table.quality[i] >= 0.99 for i in decision.ranking[: int(decision.feasible.sum())])
    assert table.plans[decision.best].codec in (None, "raw", "fp16", "png")


def test_down_links_and_nodes_are_skipped(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    live = _live(table, 2e6)
    live.node_up[table.nodes.index("edge")] = False
    assert _best(table, live).startswith("cloud/")
    live.link_up[table.links.index("device-cloud")] = False
    assert _best(table, live) == "local@device"


def test_fallback_ranking_puts_feasible_first_then_the_rest(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    decision = decide(table, _live(table, 2e6), Policy(max_latency_ms=80), True)
    feasible = int(decision.feasible.sum())
    assert 0 < feasible < len(decision.ranking)
    assert all(decision.feasible[i] for i in decision.ranking[:feasible])
    assert len(decision.ranking) == int(decision.hard_ok.sum())


def test_weights_trade_latency_for_energy(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    table = _table(spec, profiles)
    live = _live(table, 2e6)
    assert _best(table, live) == "edge/jpeg90"
    # Valuing energy heavily keeps the work on the 10 W device rather than a 450 W GPU.
    energy = Policy(weights=ObjectiveWeights(latency=1.0, usd=0.0, energy=1.0))
    assert _best(table, live, energy) == "local@device"


def test_unprofiled_plans_are_not_chosen(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    empty = Profiles()
    table = _table(spec, empty)
    assert not table.profiled.any()
    with pytest.raises(NoFeasiblePlan, match="not profiled"):
        decide(table, _live(table, 2e6), Policy(), True)


def test_chat_costs_grow_with_tokens_and_token_prices(spec) -> None:  # type: ignore[no-untyped-def]
    profiles = Profiles()
    for node in ("device", "edge", "cloud"):
        profiles.set(node, "smollm2", "llm:prefill_tok_s", 1000.0)
        profiles.set(node, "smollm2", "llm:decode_tok_s", 80.0 if node != "device" else 20.0)
    plans = chat_plans(spec, ["smollm2"], "device")
    short = build_chat_table(spec, plans, profiles, {"smollm2": 20}, 10, exact_tokens=True)
    long = build_chat_table(spec, plans, profiles, {"smollm2": 1000}, 200, exact_tokens=True)
    assert np.all(long.compute_s > short.compute_s)
    device = [p.id for p in plans].index("chat@device/smollm2")
    assert short.compute_s[device] == pytest.approx(20 / 1000 + 10 / 20)
    assert math.isnan(short.quality[device])  # no quality prior configured for smollm2
    assert not short.paid[device] and short.paid[[p.id for p in plans].index("chat@cloud/smollm2")]


def test_min_quality_picks_the_smallest_learned_codec_that_meets_it(spec, profiles) -> None:  # type: ignore[no-untyped-def]
    learned = {"ib-small": (40.0, 0.95), "ib-large": (90.0, 0.992)}
    for codec, (size, agreement) in learned.items():
        profiles.set(ANY_NODE, MODEL, codec_metric(codec, 1, "bytes"), size)
        profiles.set(ANY_NODE, MODEL, codec_metric(codec, 1, "ms"), 0.5)
        profiles.set(ANY_NODE, MODEL, codec_metric(codec, 1, "agreement"), agreement)
    _measure_accuracy(profiles)
    plans = vision_plans(spec, MODEL, 6, "device", learned_codecs={1: tuple(learned)})
    assert {"split@1/edge/ib-small", "split@1/edge/ib-large"} <= {p.id for p in plans}
    assert not any(p.codec == "ib-small" and p.split != 1 for p in plans)
    table = build_vision_table(spec, plans, profiles)
    live = _live(table, 100e3)

    def best(min_quality: float) -> str:
        # quality: any lifts the default floor (1 point below the lossless plans), so only
        # the minimum asked for counts
        policy = Policy(min_quality=min_quality, quality="any")
        return table.plans[decide(table, live, policy, True).best].id

    assert best(0.9) == "split@1/edge/ib-small"
    assert best(0.99) == "split@1/edge/ib-large"
    assert "ib-" not in best(0.999)


def _chat_rounds(spec, explore: float, rounds: int = 20) -> list[str]:  # type: ignore[no-untyped-def]
    """Chat requests where edge and cloud are equally fast (75 tok/s), but edge's profile
    came from an unlucky sample (60 tok/s). Each answer teaches the chosen node its speed."""
    true_decode = {"device": 19.0, "edge": 75.0, "cloud": 75.0}
    profiles = Profiles()
    for node, measured in (("device", 19.0), ("edge", 60.0), ("cloud", 75.0)):
        profiles.set(node, "smollm2", "llm:prefill_tok_s", 300.0, samples=3)
        profiles.set(node, "smollm2", "llm:decode_tok_s", measured, samples=3)
    plans = chat_plans(spec, ["smollm2"], "device")
    policy = Policy(weights=ObjectiveWeights(explore=explore))
    chosen = []
    for _ in range(rounds):
        table = build_chat_table(spec, plans, profiles, {"smollm2": 30}, 64, exact_tokens=True)
        rtt = {"device-edge": 0.02, "device-cloud": 0.08, "edge-cloud": 0.04}
        live = LiveState(
            np.full(len(table.links), 1e6),
            np.array([rtt[name] for name in table.links]),
            np.ones(len(table.links), bool),
            np.zeros(len(table.nodes)),
            np.ones(len(table.nodes), bool),
        )
        plan = table.plans[decide(table, live, policy, True).best]
        node = plan.tail_node or ""
        chosen.append(node)
        profiles.observe(node, "smollm2", "llm:decode_tok_s", true_decode[node])
    return chosen


def test_exploration_retries_a_near_tied_node_that_was_profiled_on_a_bad_sample(spec) -> None:  # type: ignore[no-untyped-def]
    assert {lk.name for lk in spec.links} == {"device-edge", "device-cloud", "edge-cloud"}
    # Without exploration the unlucky profile is never corrected: every answer is paid for.
    assert set(_chat_rounds(spec, explore=0.0)) == {"cloud"}
    chosen = _chat_rounds(spec, explore=0.5)
    assert "device" not in chosen  # 4x slower is not a near tie: never explored
    assert chosen[-5:] == ["edge"] * 5  # edge measured, found faster (shorter RTT), kept
