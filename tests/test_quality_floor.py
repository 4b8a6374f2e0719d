"""Quality as measured accuracy, and the floor that keeps a cheaper plan from answering worse.

The planner tests use made-up, known profiles; the last test measures real accuracies of
EfficientNet-Lite0 on the labelled ImageNet photos of the shared data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.plan_helpers import all_up
from tierwise.config import ObjectiveWeights, Policy, default_spec
from tierwise.errors import InputError
from tierwise.gateway.request_options import parse_options
from tierwise.placement.cost import LiveState, PlanTable, build_vision_table
from tierwise.placement.planner import UNJUDGED, Decision, decide
from tierwise.placement.plans import variant_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric

SHARED = Path(os.environ.get("TIERWISE_DATA") or Path(__file__).parents[2] / "shared" / "data")
BASE, VARIANT, N = "efficientnet-lite0", "efficientnet-lite0:int8", 6


def _profiles(variant_accuracy: float | None, base_accuracy: float | None = 0.88) -> Profiles:
    """The base model slow on the device; its int8 variant four times faster there."""
    p = Profiles()
    for node, ms in (("device", 40.0), ("edge", 10.0), ("cloud", 10.0)):
        for i in range(N):
            p.set(node, BASE, stage_metric(i), ms)
            p.set(node, VARIANT, stage_metric(i), ms / 4)
    for codec, size in (("jpeg90", 20_000.0), ("png", 90_000.0)):
        for what, value in (("bytes", size), ("ms", 2.0), ("agreement", 0.99)):
            p.set(ANY_NODE, BASE, codec_metric(codec, 0, what), value)
    p.set(ANY_NODE, BASE, "out:bytes", 4000.0)
    p.set(ANY_NODE, VARIANT, "model:agreement", 0.85)
    if base_accuracy is not None:
        p.set(ANY_NODE, BASE, "model:accuracy", base_accuracy)
        p.set(ANY_NODE, BASE, codec_metric("png", 0, "accuracy"), base_accuracy)
        p.set(ANY_NODE, BASE, codec_metric("jpeg90", 0, "accuracy"), base_accuracy - 0.004)
    if variant_accuracy is not None:
        p.set(ANY_NODE, VARIANT, "model:accuracy", variant_accuracy)
        for codec in ("jpeg90", "png"):
            p.set(ANY_NODE, VARIANT, codec_metric(codec, 0, "accuracy"), variant_accuracy)
    return p


def _table(profiles: Profiles) -> PlanTable:
    spec = default_spec()
    plans = vision_plans(spec, BASE, N, "device", feature_codecs=())
    plans += variant_plans(spec, BASE, VARIANT, ["device", "edge"], N, "device")
    return build_vision_table(spec, plans, profiles)


def _live(table: PlanTable, bandwidth: float = 20e3) -> LiveState:
    return all_up(table, bandwidth)


def _decide(table: PlanTable, policy: Policy, bandwidth: float = 20e3) -> Decision:
    return decide(table, _live(table, bandwidth), policy, True)


def _best(table: PlanTable, policy: Policy, bandwidth: float = 20e3) -> str:
    return table.plans[_decide(table, policy, bandwidth).best].id


def test_the_default_floor_refuses_a_low_accuracy_variant() -> None:
    table = _table(_profiles(variant_accuracy=0.80))
    assert _best(table, Policy(quality="any")) == "int8:local@device"  # 4x faster
    decision = _decide(table, Policy())
    assert table.plans[decision.best].id == "local@device"
    assert decision.relaxed == []
    floor = decision.quality_floor
    assert floor.best == pytest.approx(0.88) and floor.floor == pytest.approx(0.87)
    assert floor.max_quality_loss == 0.01 and floor.unjudged is None
    assert not any(decision.feasible[i] for i, p in enumerate(table.plans) if p.model == VARIANT)


def test_a_variant_within_a_point_of_the_best_is_allowed() -> None:
    table = _table(_profiles(variant_accuracy=0.875))
    assert _best(table, Policy()) == "int8:local@device"


def test_callers_override_the_floor() -> None:
    table = _table(_profiles(variant_accuracy=0.80))
    assert _best(table, Policy(max_quality_loss=0.1)) == "int8:local@device"
    assert _best(table, Policy(max_quality_loss=0.05)) == "local@device"
    # quality: any lifts the floor but keeps a minimum the caller sets
    assert _best(table, Policy(quality="any", min_quality=0.85)) == "local@device"
    # a request puts the floor back over a key that lifted it
    key = Policy(quality="any")
    assert _best(table, Policy(quality="floor").over(key)) == "local@device"
    assert _best(table, Policy().over(key)) == "int8:local@device"


def test_when_nothing_meets_the_floor_the_nearest_plan_serves_and_says_so() -> None:
    table = _table(_profiles(variant_accuracy=0.80))
    decision = _decide(table, Policy(min_quality=0.95))
    assert decision.relaxed == ["min_quality"]
    assert table.quality[decision.best] == pytest.approx(0.88)  # the nearest to 0.95
    # only the fast variant (62 ms, accuracy 0.5) meets the latency, only the base (242 ms)
    # the floor (0.87): the one that misses by the least relative shortfall serves (the
    # variant's is 0.43), and the answer names what it missed
    table = _table(_profiles(variant_accuracy=0.5))
    decision = _decide(table, Policy(max_latency_ms=200))  # the base misses by 0.21
    assert table.plans[decision.best].id == "local@device"
    assert decision.relaxed == ["max_latency_ms"]
    decision = _decide(table, Policy(max_latency_ms=70))  # the base misses by 2.5
    assert table.plans[decision.best].id == "int8:local@device"
    assert decision.relaxed == ["max_quality_loss"]


def test_without_measured_accuracy_the_floor_says_it_cannot_judge() -> None:
    table = _table(_profiles(variant_accuracy=None, base_accuracy=None))
    assert np.isnan(table.quality).all() and not np.isnan(table.agreement).all()
    decision = _decide(table, Policy())
    assert decision.quality_floor.unjudged == UNJUDGED
    assert decision.quality_floor.as_dict()["floor"] is None
    assert decision.relaxed == []
    assert table.plans[decision.best].id == "int8:local@device"  # as without a floor


def test_a_plan_of_unknown_accuracy_cannot_be_shown_to_meet_the_floor() -> None:
    table = _table(_profiles(variant_accuracy=None))
    decision = _decide(table, Policy())
    assert table.plans[decision.best].id == "local@device"
    assert not any(decision.feasible[i] for i, p in enumerate(table.plans) if p.model == VARIANT)


def test_the_floor_is_set_by_the_best_plan_the_request_could_use() -> None:
    """Under raw-stays-local the offloads are out; the device's own plans set the floor."""
    profiles = _profiles(variant_accuracy=0.86)
    profiles.set(ANY_NODE, BASE, "model:accuracy", 0.865)  # the device's fp32 plan
    table = _table(profiles)
    decision = _decide(table, Policy(privacy="raw-stays-local"))
    assert decision.quality_floor.best == pytest.approx(0.865)
    assert table.plans[decision.best].id == "int8:local@device"
    assert _decide(table, Policy()).quality_floor.best == pytest.approx(0.88)


def test_quality_enters_the_objective_at_its_weight() -> None:
    """jpeg90 is 0.4 points less accurate than png but 70 KB smaller: at 1 MB/s that is
    70 ms, worth more than 0.4 points at the default weight (1 point = 10 ms) and less
    than at 200 (1 point = 2 s)."""
    table = _table(_profiles(variant_accuracy=0.80))
    assert _best(table, Policy(), 1e6) == "edge/jpeg90"
    heavy = Policy(weights=ObjectiveWeights(quality=200.0))
    assert _best(table, heavy, 1e6) == "edge/png"


def test_quality_policy_fields_parse_and_bad_values_name_the_field() -> None:
    options = parse_options({"x-tierwise-policy": "quality=any; max_quality_loss=0.05"})
    assert options.policy.quality == "any" and options.policy.max_quality_loss == 0.05
    assert options.policy.loss_floor is None
    with pytest.raises(InputError, match="max_quality_loss") as caught:
        parse_options({"x-tierwise-policy": "max_quality_loss=2"})
    assert caught.value.http_status == 400
    with pytest.raises(InputError, match="quality"):
        parse_options({}, {"policy": {"quality": "best"}})


@pytest.mark.shared_data
def test_measured_accuracy_on_labelled_photos_drives_the_floor() -> None:
    """Real Lite0 on 30 labelled photos: a lossless codec keeps the unsplit model's
    accuracy exactly; 2-bit features after the first stage lose it, and the default floor
    refuses that plan even where it is the fastest."""
    from tierwise.datasets.imagenet_samples import find, labelled_photos
    from tierwise.gateway.accuracy_profile import profile_accuracy
    from tierwise.models.efficientnet_lite import EfficientNetLite

    folder = find(SHARED)
    assert folder is not None, f"no labelled photos under {SHARED}; set TIERWISE_DATA"
    photos = labelled_photos(folder, 30)
    assert len({p.label for p in photos}) == 30
    model = EfficientNetLite(BASE, "lite0")
    profiles = Profiles()
    profile_accuracy(model, photos, profiles, {1: ("raw", "q2")})
    accuracy = profiles.get(ANY_NODE, BASE, "model:accuracy")
    assert accuracy is not None and 0.7 <= accuracy <= 1.0
    assert profiles.get(ANY_NODE, BASE, codec_metric("raw", 1, "accuracy")) == accuracy
    q2 = profiles.get(ANY_NODE, BASE, codec_metric("q2", 1, "accuracy"))
    assert q2 is not None and q2 < accuracy - 0.01
    for node, ms in (("device", 40.0), ("edge", 10.0), ("cloud", 10.0)):
        for i in range(N):
            profiles.set(node, BASE, stage_metric(i), ms)
    profiles.set(ANY_NODE, BASE, "out:bytes", 4000.0)
    for codec, size in (("raw", 800_000.0), ("q2", 50_000.0)):
        profiles.set(ANY_NODE, BASE, codec_metric(codec, 1, "bytes"), size)
        profiles.set(ANY_NODE, BASE, codec_metric(codec, 1, "ms"), 1.0)
    spec = default_spec()
    plans = vision_plans(spec, BASE, N, "device", input_codecs=(), feature_codecs=("raw", "q2"))
    table = build_vision_table(spec, plans, profiles)
    assert _best(table, Policy(quality="any"), 100e6) == "split@1/edge/q2"
    assert _best(table, Policy(), 100e6) in ("local@device", "split@1/edge/raw")
