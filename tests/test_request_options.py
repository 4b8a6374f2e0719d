"""Per-request policy from headers and bodies, laid over key and gateway policies."""

from __future__ import annotations

import pytest

from tierwise.config import ObjectiveWeights, Policy
from tierwise.errors import InputError
from tierwise.gateway.request_options import parse_options


def test_header_key_value_form() -> None:
    opts = parse_options(
        {"x-tierwise-policy": "max_latency_ms=250; privacy=features-may-leave; weights.usd=5"}
    )
    assert opts.policy.max_latency_ms == 250
    assert opts.policy.privacy == "features-may-leave"
    assert opts.policy.weights == ObjectiveWeights(usd=5)


def test_header_json_form_and_pinned_plan() -> None:
    opts = parse_options(
        {"x-tierwise-policy": '{"max_usd": 0.001}', "x-tierwise-plan": "edge/jpeg90"}
    )
    assert opts.policy.max_usd == 0.001 and opts.pinned_plan == "edge/jpeg90"


def test_body_overrides_header() -> None:
    opts = parse_options(
        {"x-tierwise-policy": "privacy=any"},
        {"policy": {"privacy": "raw-stays-local"}, "plan": "local@device"},
    )
    assert opts.policy.privacy == "raw-stays-local" and opts.pinned_plan == "local@device"


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (
            "privacy=everyone",
            r"privacy: Input should be 'raw-stays-local', 'pii-stays-local', 'redact', "
            r"'features-may-leave' or 'any'",
        ),
        ("max_latency_ms=-5", r"max_latency_ms: Input should be greater than 0"),
        ("max_latency_ms", r"expected key=value"),
        ("{not json", r"not valid JSON"),
        ("colour=blue", r"colour: Extra inputs are not permitted"),
    ],
)
def test_bad_policies_name_the_field(header: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_options({"x-tierwise-policy": header})


def test_request_policy_lies_over_key_over_gateway() -> None:
    gateway = Policy(privacy="any", max_usd=0.01)
    key = Policy(max_latency_ms=500)
    request = Policy(privacy="raw-stays-local")
    merged = request.over(key.over(gateway))
    assert (merged.privacy, merged.max_usd, merged.max_latency_ms) == ("raw-stays-local", 0.01, 500)


def test_weights_stay_weights_and_merge_field_by_field() -> None:
    from tierwise.config import ObjectiveWeights

    gateway = Policy(weights=ObjectiveWeights(latency=2.0, usd=5.0))
    request = parse_options({"x-tierwise-policy": '{"weights": {"usd": 1000000}}'}).policy
    merged = request.over(Policy().over(gateway))
    assert isinstance(merged.weights, ObjectiveWeights)
    assert (merged.weights.latency, merged.weights.usd) == (2.0, 1e6)
    alone = request.over(Policy())
    assert isinstance(alone.weights, ObjectiveWeights) and alone.weights.usd == 1e6
