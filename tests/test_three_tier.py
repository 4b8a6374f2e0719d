"""Three-tier plans (device → edge → cloud, two split points, a codec on each link) and
`original` input plans (the uploaded bytes forwarded unchanged): the plans and their
predicted costs on made-up profiles, then both run end to end on real node processes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.plan_helpers import all_up
from tierwise.codecs import wire
from tierwise.codecs.registry import decode_message
from tierwise.config import Policy, default_spec, parse_spec
from tierwise.placement.cost import LiveState, PlanTable, build_vision_table
from tierwise.placement.planner import decide
from tierwise.placement.plans import three_tier_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric

MODEL, N = "efficientnet-lite0", 7
PLAN = "split@2/edge/raw+5/cloud/raw"
FEATURE_BYTES = {2: 80_000.0, 5: 23_000.0}


def _profiles(stage_ms: float = 10.0) -> Profiles:
    p = Profiles()
    for node, factor in (("device", 4.0), ("edge", 1.0), ("cloud", 0.5)):
        for i in range(N):
            p.set(node, MODEL, stage_metric(i), stage_ms * factor)
    p.set(ANY_NODE, MODEL, "out:bytes", 4100.0)
    p.set(ANY_NODE, MODEL, codec_metric("original", 0, "bytes"), 60_000.0)
    for split, size in FEATURE_BYTES.items():
        for codec, ratio in (("raw", 1), ("q8", 4)):
            for what, value in (("bytes", size / ratio), ("ms", 0.5), ("agreement", 1.0)):
                p.set(ANY_NODE, MODEL, codec_metric(codec, split, what), value)
    return p


def _live(table: PlanTable, bandwidth: float) -> LiveState:
    return all_up(table, bandwidth)


def test_three_tier_plans_cover_every_pair_of_splits_and_codecs() -> None:
    spec = default_spec()
    plans = three_tier_plans(spec, MODEL, N, "device", feature_codecs=("raw", "q8"))
    pairs = sum(1 for a in range(1, N - 1) for _ in range(a + 1, N))
    assert len(plans) == pairs * 2 * 2
    plan = next(p for p in plans if p.id == PLAN)
    assert plan.tiers == ("device", "edge", "cloud")
    assert (plan.head_node, plan.tail_node, plan.last_node) == ("device", "edge", "cloud")
    assert (plan.split, plan.split2, plan.link, plan.link2) == (2, 5, "device-edge", "edge-cloud")
    assert plan.sends == "features"


def test_a_three_tier_plan_is_costed_over_both_links() -> None:
    spec = default_spec()
    plans = three_tier_plans(spec, MODEL, N, "device", feature_codecs=("raw", "q8"))
    table = build_vision_table(spec, plans, _profiles())
    i = [p.id for p in plans].index(PLAN)
    assert table.profiled[i]
    slow = table.predict(_live(table, 100e3))[0][i]
    fast = table.predict(_live(table, 10e6))[0][i]
    # both links carry the features one way and the logits back
    moved = FEATURE_BYTES[2] + FEATURE_BYTES[5] + 2 * 4100 + 2 * (300 + 250)
    assert slow - fast == pytest.approx(moved / 100e3 - moved / 10e6)
    cloud_s = 0.5 * 10.0 * (N - 5) / 1e3
    assert table.usd[i] > spec.prices.compute["cloud"].usd_per_second * cloud_s
    live = _live(table, 10e6)
    live.link_up[table.links.index("edge-cloud")] = False
    assert not table.reachable(live)[i]


def test_a_three_tier_plans_quality_is_measured_or_lossless_by_construction() -> None:
    spec = default_spec()
    plans = three_tier_plans(spec, MODEL, N, "device", feature_codecs=("raw", "q8"))
    profiles = _profiles()
    profiles.set(ANY_NODE, MODEL, "model:accuracy", 0.88)
    profiles.set(ANY_NODE, MODEL, "codec:q8@2+q8@5:accuracy", 0.86)
    table = build_vision_table(spec, plans, profiles)
    quality = dict(zip([p.id for p in plans], table.quality, strict=True))
    assert quality[PLAN] == pytest.approx(0.88)  # raw moves float32 bit for bit
    assert quality["split@2/edge/q8+5/cloud/q8"] == pytest.approx(0.86)
    assert np.isnan(quality["split@2/edge/q8+5/cloud/raw"])  # not measured
    # the default floor keeps the measured-lossy pair out, the lossless one in
    decision = decide(table, _live(table, 10e6), Policy(), True)
    assert not decision.feasible[[p.id for p in plans].index("split@2/edge/q8+5/cloud/q8")]
    assert decision.feasible[[p.id for p in plans].index(PLAN)]


def test_the_original_plan_is_offered_for_every_remote_node() -> None:
    spec = default_spec()
    plans = vision_plans(spec, MODEL, N, "device", feature_codecs=())
    table = build_vision_table(spec, plans, _profiles())
    i = [p.id for p in plans].index("edge/original")
    assert plans[i].sends == "raw" and plans[i].split == 0
    assert table.bytes_up[i] == 60_000 + 300 and table.agreement[i] == 1.0


# ---------------------------------------------------------------- on real nodes


def _spec(ledger: Path) -> dict[str, object]:
    power = {"active_watts": 10, "idle_watts": 1, "source": "test figures"}
    nodes = [
        {"name": tier, "tier": tier, "models": [MODEL], "power": power}
        for tier in ("device", "edge", "cloud")
    ]
    return {
        "name": "three-tier",
        "variants_dir": None,  # hermetic: no developer-made variants
        "codecs_dir": None,  # nor codecs
        "models": {MODEL: {"kind": "efficientnet-lite", "variant": "lite0"}},
        "nodes": nodes,
        "links": [
            {"a": "device", "b": "edge", "medium": "wifi", "emulate": {"bandwidth": "50MB/s"}},
            {"a": "edge", "b": "cloud", "medium": "ethernet", "emulate": {"bandwidth": "50MB/s"}},
            {"a": "device", "b": "cloud", "medium": "lte", "emulate": {"bandwidth": "50MB/s"}},
        ],
        "gateway": {
            "api_keys": [{"name": "t", "key_env": "TEST_KEY"}],
            "ledger_url": f"sqlite:///{ledger}",
        },
    }


@pytest.fixture(scope="module")
def three_tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, object]]:
    """Three real nodes and a gateway whose profiles are given, so it starts without
    measuring (the planner needs numbers; these tests check answers, not choices)."""
    from tierwise.ledger.store import Ledger
    from tierwise.runtime.launcher import LocalCluster

    state_dir = tmp_path_factory.mktemp("three-tier")
    ledger = Ledger(f"sqlite:///{state_dir / 'seeded.db'}")
    ledger.save_profiles(_profiles().rows())
    ledger.close()
    env = {"PATH": "/usr/bin:/bin", "TEST_KEY": "k-test-0123456789abcdef"}
    spec = parse_spec(_spec(state_dir / "seeded.db")).with_free_ports()
    with LocalCluster(spec, state_dir / "state", env=env) as cluster:
        headers = {"Authorization": "Bearer k-test-0123456789abcdef"}
        with httpx.Client(base_url=cluster.state.gateway_url, headers=headers, timeout=120) as gw:
            yield gw, cluster


@pytest.fixture(scope="module")
def reference() -> object:
    from tierwise.models.efficientnet_lite import EfficientNetLite

    return EfficientNetLite(MODEL, "lite0")


def _probabilities(logits: np.ndarray) -> np.ndarray:
    row = logits.reshape(-1).astype(np.float64)
    p = np.exp(row - row.max())
    return p / p.sum()


def _check_answer(body: dict, expected: np.ndarray) -> None:  # type: ignore[type-arg]
    for prediction in body["predictions"]:
        assert prediction["probability"] == pytest.approx(expected[prediction["index"]], abs=1e-4)
    assert body["predictions"][0]["index"] == int(expected.argmax())


def test_a_three_tier_plan_runs_end_to_end_like_the_unsplit_model(
    three_tier: tuple[httpx.Client, object], reference: object, photo_jpeg: bytes
) -> None:
    import io

    from PIL import Image

    gw, cluster = three_tier
    model = reference
    x = model.preprocess(Image.open(io.BytesIO(photo_jpeg)))  # type: ignore[attr-defined]
    logits = model.run_all(x)  # type: ignore[attr-defined]
    response = gw.post("/v1/vision/classify", content=photo_jpeg, headers={"X-Tierwise-Plan": PLAN})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tierwise"]["plan"] == PLAN
    assert body["tierwise"]["tiers"] == ["device", "edge", "cloud"]
    _check_answer(body, _probabilities(logits))
    # and the tensors themselves: head here, the edge forwarding to the cloud over its link
    from tierwise.runtime.node_client import NodeClient

    state, token = cluster.state, cluster.token  # type: ignore[attr-defined]
    head = model.run_stages(x, 0, 2)  # type: ignore[attr-defined]

    async def hop() -> np.ndarray:
        async with NodeClient(state.url_from("device", "edge"), token) as edge:
            reply = await edge.run_payload(
                MODEL, wire.encode_tensor(head), 2, 5, "raw", then=("cloud", N)
            )
        assert reply.next_hop is not None and reply.next_hop.transfer.bytes_up > 0
        return decode_message(wire.decode_tensor(reply.payload))

    far = asyncio.run(hop())
    assert np.max(np.abs(far - logits)) < 1e-4


def test_original_sends_the_uploaded_bytes_unchanged(
    three_tier: tuple[httpx.Client, object], reference: object, photo_jpeg: bytes
) -> None:
    import io

    from PIL import Image

    gw, cluster = three_tier
    model = reference
    logits = model.run_all(model.preprocess(Image.open(io.BytesIO(photo_jpeg))))  # type: ignore[attr-defined]
    response = gw.post(
        "/v1/vision/classify", content=photo_jpeg, headers={"X-Tierwise-Plan": "edge/original"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    _check_answer(body, _probabilities(logits))
    assert body["tierwise"]["measured"]["bytes_up"] > len(photo_jpeg)
    # the node says what it received: the very bytes uploaded
    state, token = cluster.state, cluster.token  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    with httpx.Client(base_url=state.node_url("edge"), headers=headers, timeout=60) as edge:
        reply = edge.post(
            f"/v1/stages/{MODEL}/run", params={"start": 0, "end": N}, content=photo_jpeg
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-tierwise-input-sha256"] == hashlib.sha256(photo_jpeg).hexdigest()
        bad = edge.post(
            f"/v1/stages/{MODEL}/run", params={"start": 0, "end": 2, "then": "cloud"},
            content=photo_jpeg,
        )  # fmt: skip
        assert bad.status_code == 400 and "then" in bad.text
