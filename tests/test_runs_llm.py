"""Plain-language runs planned by the llm planner on a real cluster: SmolLM2 writes the
graph, and the planning ask is an ordinary chat request of the run, placed under the
run's policy and recorded under its id."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import SMALL_MODELS
from tierwise.config import parse_spec
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

POWER = {"active_watts": 10, "idle_watts": 1, "source": "test fixture"}
HOT = {"active_watts": 400, "idle_watts": 1, "source": "test fixture: a power-hungry device"}
# Weigh energy alone: the edge (10 W) beats the device (400 W) unless the policy forbids it.
ENERGY = {"latency": 0.0, "usd": 0.0, "energy": 1.0, "explore": 0.0}
PHOTO_QUESTION = "What is in example.jpg? Tell me in one sentence."


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """SmolLM2 on the device and on the edge, so the policy, not the cluster, decides
    where planning runs; photos only on the device; the gateway plans with the llm
    planner."""
    spec = parse_spec(
        {
            "name": "llm-runs",
            "variants_dir": None,
            "codecs_dir": None,
            "models": SMALL_MODELS,
            "nodes": [
                {"name": "device", "tier": "device", "models": list(SMALL_MODELS), "power": HOT},
                {"name": "edge", "tier": "edge", "models": ["smollm2"], "power": POWER},
            ],
            "links": [
                {"a": "device", "b": "edge", "emulate": {"bandwidth": "5MB/s", "rtt": "5ms"}}
            ],
            # A planning prompt is about a thousand tokens: seconds on a busy 2-core machine.
            "gateway": {"attempt_timeout": "120s", "runs": {"planner": "llm"}},
        },
        "llm runs test spec",
    )
    # One thread a node: on a busy 2-core machine a two-thread llama.cpp was up to ten
    # times slower whenever another process ran, and the edge's ask timed out.
    nodes = [n.model_copy(update={"threads": 1}) for n in spec.nodes]
    spec = spec.model_copy(update={"nodes": nodes})
    cluster = LocalCluster(spec, tmp_path_factory.mktemp("llm-runs"))
    cluster.start()
    key = read_api_key(cluster.state.state_dir)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(
            base_url=cluster.state.gateway_url, headers=headers, timeout=300
        ) as client:
            yield client
    finally:
        cluster.stop()


def _ask(gw: httpx.Client, text: str, photo: bytes, tierwise: dict[str, Any]) -> dict[str, Any]:
    files = {"example.jpg": base64.b64encode(photo).decode()}
    response = gw.post("/v1/runs", json={"input": text, "files": files, "tierwise": tierwise})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def test_raw_stays_local_plans_on_the_device_and_records_the_ask_under_the_run(
    planned: httpx.Client, photo_jpeg: bytes
) -> None:
    private = {"policy": {"privacy": "raw-stays-local", "weights": ENERGY}}
    run = _ask(planned, PHOTO_QUESTION, photo_jpeg, private)
    planning = run["planning"]
    assert planning["planner"] == "llm" and planning["tier"] == "device", planning
    asks = planning["asks"]
    assert 1 <= len(asks) == planning["tries"] <= 2
    assert all(a["tiers"] == ["device"] and a["plan"].startswith("chat@device/") for a in asks)
    assert planning["prompt_tokens"] > 500  # the catalog and retrieved examples were shown
    # The graph SmolLM2 wrote ran: steps of tools this cluster serves, on the photo.
    assert run["status"] in ("ok", "partial") and "example.jpg" in str(run["graph"])
    # The planning asks are records of the run, like its steps.
    records = planned.get(f"/v1/runs/{run['id']}").json()["records"]
    by_id = {r["id"]: r for r in records}
    for ask in asks:
        record = by_id[ask["request_id"]]
        assert record["run_id"] == run["id"] and record["tiers"] == "device"
        assert record["task"] == "chat" and record["tokens_in"] == ask["prompt_tokens"]
    assert len(records) > len(asks)  # and the steps' own records


def test_without_the_privacy_rule_the_same_planning_ask_goes_to_the_edge(
    planned: httpx.Client, photo_jpeg: bytes
) -> None:
    """The contrast: the same run and weights, and nothing keeping it local."""
    run = _ask(planned, PHOTO_QUESTION, photo_jpeg, {"policy": {"weights": ENERGY}})
    planning = run["planning"]
    assert planning["tier"] == "edge", planning
    assert all(a["tiers"] == ["edge"] for a in planning["asks"]), planning
