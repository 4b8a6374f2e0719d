"""Plain-language runs on real clusters: chains, DAGs, unserved tools, failures, budgets.

The graphs here are given, so these tests check execution, records and answers whatever
a planner would have made; the planners are tested (and benchmarked) on their own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SMALL_MODELS, RunningCluster
from tests.money import assert_ledger_balances
from tierwise.config import parse_spec
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

POWER = {"active_watts": 10, "idle_watts": 1, "source": "test fixture"}
CHAIN = {
    "task_nodes": [
        {"task": "Image Classification", "arguments": ["example.jpg"]},
        {"task": "Text Generation", "arguments": ["<node-0>"]},
    ],
    "task_links": [{"source": "Image Classification", "target": "Text Generation"}],
}


def _run(
    gw: httpx.Client, text: str, graph: dict[str, Any], photo: bytes | None = None, **extra: Any
) -> httpx.Response:
    files = {"example.jpg": base64.b64encode(photo).decode()} if photo else {}
    return gw.post("/v1/runs", json={"input": text, "files": files, "graph": graph, **extra})


def test_a_chain_classifies_then_writes_and_records_every_step(
    gw: httpx.Client, photo_jpeg: bytes
) -> None:
    text = "What is in example.jpg? Tell me in one sentence."
    response = _run(gw, text, CHAIN, photo_jpeg)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "ok" and run["answered_by"] == "last step"
    label, written = run["steps"]
    assert label["output"]["kind"] == "label" and "cat" in label["output"]["text"].lower()
    assert written["output"]["kind"] == "text" and run["answer"] == written["output"]["text"]
    for step in run["steps"]:
        assert step["plan"] and step["tiers"] and step["latency_ms"] > 0
        assert {"bytes_up", "bytes_down", "usd_modelled", "joules_modelled"} <= set(step)
    assert written["started_ms"] >= label["started_ms"] + label["seconds"] * 1e3 - 1
    assert run["graph"] == CHAIN and run["planning"]["planner"] == "given"
    # The run and each of its steps are in the ledger, under the run's id.
    record = gw.get(f"/v1/runs/{run['id']}").json()
    assert record["status"] == "ok" and record["answer"] == run["answer"]
    assert [r["id"] for r in record["records"]] == [s["request_id"] for s in run["steps"]]
    assert all(r["run_id"] == run["id"] and r["status"] == "ok" for r in record["records"])
    assert "data_base64" not in str(record["explain"])  # the ledger keeps sizes, not bytes


def test_raw_stays_local_keeps_the_photo_step_on_the_device(
    gw: httpx.Client, photo_jpeg: bytes
) -> None:
    policy = {"X-Tierwise-Policy": "privacy=raw-stays-local"}
    files = {"example.jpg": base64.b64encode(photo_jpeg).decode()}
    body = {"input": "What is in example.jpg?", "files": files, "graph": CHAIN}
    run = gw.post("/v1/runs", json=body, headers=policy).json()
    assert run["steps"][0]["tiers"] == ["device"]
    assert all(s["tiers"] == ["device"] for s in run["steps"])


def test_independent_branches_run_at_once(gw: httpx.Client, photo_jpeg: bytes) -> None:
    graph = {
        "task_nodes": [
            {"task": "Image Classification", "arguments": ["example.jpg"]},
            {"task": "Summarization", "arguments": ["Rivers carry water from hills to seas."]},
            {"task": "Text Generation", "arguments": ["<node-0>", "<node-1>"]},
        ],
        "task_links": [
            {"source": "Image Classification", "target": "Text Generation"},
            {"source": "Summarization", "target": "Text Generation"},
        ],
    }
    run = _run(gw, "Describe example.jpg and sum up the text.", graph, photo_jpeg).json()
    a, b, joined = run["steps"]
    assert all(s["status"] == "ok" for s in run["steps"]), run["steps"]
    spans = [(s["started_ms"], s["started_ms"] + s["seconds"] * 1e3) for s in (a, b)]
    assert max(lo for lo, _ in spans) < min(hi for _, hi in spans)  # they overlapped
    wall = max(hi for _, hi in spans) - min(lo for lo, _ in spans)
    assert wall < sum(hi - lo for lo, hi in spans)
    assert joined["started_ms"] >= max(hi for _, hi in spans) - 1
    record = gw.get(f"/v1/runs/{run['id']}").json()
    assert record["status"] == "ok" and record["explain"]["graph"] == graph
    assert sorted(r["id"] for r in record["records"]) == sorted(
        s["request_id"] for s in run["steps"]
    )


def test_a_tool_no_model_serves_is_planned_and_reported_not_faked(gw: httpx.Client) -> None:
    graph = {
        "task_nodes": [
            {"task": "Summarization", "arguments": ["Bees make honey from nectar in hives."]},
            {"task": "Text-to-Speech", "arguments": ["<node-0>"]},
        ],
        "task_links": [{"source": "Summarization", "target": "Text-to-Speech"}],
    }
    run = _run(gw, "Summarize this and read it to me.", graph).json()
    summary, speech = run["steps"]
    assert summary["status"] == "ok"
    assert speech["status"] == "not_served" and speech["error"] == "not served by this cluster"
    assert "output" not in speech and run["status"] == "partial"
    assert any("Text-to-Speech" in m for m in run["missing"])
    record = gw.get(f"/v1/runs/{run['id']}").json()  # only what ran is on the ledger
    assert record["status"] == "partial" and record["answer"] == run["answer"]
    assert run["answered_by"] == "chat"  # something is missing: a chat model says what
    ran = [summary["request_id"], run["composing"]["request_id"]]
    assert sorted(r["id"] for r in record["records"]) == sorted(ran)
    assert record["explain"]["steps"][1]["status"] == "not_served"


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            {"task_nodes": [{"task": "Teleport", "arguments": []}]},
            "task_nodes[0].task: unknown tool 'Teleport'",
        ),
        (
            {"task_nodes": [{"task": "Summarization", "arguments": ["<node-3>"]}]},
            "task_nodes[0].arguments[0]: <node-3> names no node",
        ),
        (
            {"task_nodes": [{"task": "Image Classification", "arguments": ["other.jpg"]}]},
            "no attached file 'other.jpg'",
        ),
        (
            {
                "task_nodes": [
                    {"task": "Summarization", "arguments": ["<node-1>"]},
                    {"task": "Translation", "arguments": ["<node-0>"]},
                ]
            },
            "the task graph has a cycle",
        ),
        ({"task_nodes": "all of them"}, "task_nodes: expected a list"),
    ],
)
def test_bad_graphs_are_refused_naming_the_problem(
    gw: httpx.Client, graph: dict[str, Any], message: str
) -> None:
    response = _run(gw, "Do it.", graph)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]


def test_bad_run_bodies_are_refused(gw: httpx.Client) -> None:
    assert gw.post("/v1/runs", json={"input": ""}).status_code == 422
    bad_name = {"input": "x", "files": {"../etc/passwd": "aGk="}, "graph": CHAIN}
    response = gw.post("/v1/runs", json=bad_name)
    assert response.status_code == 400 and "not a plain file name" in response.text
    bad_data = {"input": "x", "files": {"example.jpg": "%%%"}, "graph": CHAIN}
    response = gw.post("/v1/runs", json=bad_data)
    assert response.status_code == 400 and "files.example.jpg is not valid base64" in response.text
    assert gw.get("/v1/runs/nope").status_code == 404


# ---------------------------------------------------------------- planned, not given


def test_a_plain_request_is_planned_on_the_device_and_run_across_tiers(
    gw: httpx.Client, photo_jpeg: bytes
) -> None:
    """No graph: the gateway's planner (learned, trained at start on the embedded
    examples) writes it; under raw-stays-local the photo step stays on the device."""
    files = {"example.jpg": base64.b64encode(photo_jpeg).decode()}
    body = {"input": "What is in example.jpg? Tell me in one sentence.", "files": files}
    run = gw.post("/v1/runs", json=body, headers={"X-Tierwise-Policy": "privacy=raw-stays-local"})
    assert run.status_code == 200, run.text
    out = run.json()
    planning = out["planning"]
    assert planning["planner"] == "learned" and planning["tier"] == "device"
    assert planning["usd_modelled"] == 0.0 and planning["latency_ms"] < 1000
    tasks = [n["task"] for n in out["graph"]["task_nodes"]]
    assert tasks == ["Image Classification", "Text Generation"], out["graph"]
    assert out["graph"]["task_nodes"][0]["arguments"] == ["example.jpg"]
    link = {"source": "Image Classification", "target": "Text Generation"}
    assert out["graph"]["task_links"] == [link]
    photo, written = out["steps"]
    assert photo["tiers"] == ["device"] and "cat" in photo["output"]["text"].lower()
    assert written["status"] == "ok" and out["answer"] == written["output"]["text"]
    record = gw.get(f"/v1/runs/{out['id']}").json()
    assert record["planner"] == "learned" and len(record["records"]) == 2


def test_tierwise_ask_runs_a_request_and_explain_shows_it_again(
    cluster: RunningCluster, photo_jpeg: bytes, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tierwise.cli import app

    photo = tmp_path / "cat.jpg"
    photo.write_bytes(photo_jpeg)
    state = ["--state-dir", str(cluster.state.state_dir)]
    runner = CliRunner()
    asked = runner.invoke(
        app,
        ["ask", "What is in example.jpg? Tell me in one sentence.",
         "--file", f"example.jpg={photo}", "--json", *state],
    )  # fmt: skip
    assert asked.exit_code == 0, asked.output
    run = json.loads(asked.output)
    assert [s["task"] for s in run["steps"]] == ["Image Classification", "Text Generation"]
    assert run["status"] == "ok" and run["answer"]
    explained = runner.invoke(app, ["explain", run["id"], *state])
    assert explained.exit_code == 0, explained.output
    assert run["id"] in explained.output and "Image Classification" in explained.output
    missing = runner.invoke(app, ["ask", "Describe x.jpg", "--file", str(tmp_path / "no.jpg")])
    assert missing.exit_code != 0 and "does not exist" in " ".join(missing.output.split())


# ---------------------------------------------------------------- a cluster to break


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Photos on the device, chat only on the edge (paid): a link or node to lose."""
    spec = parse_spec(
        {
            "name": "runs",
            "variants_dir": None,
            "codecs_dir": None,
            "models": SMALL_MODELS,
            "nodes": [
                {
                    "name": "device",
                    "tier": "device",
                    "models": ["efficientnet-lite0"],
                    "power": POWER,
                },
                {"name": "edge", "tier": "edge", "models": ["smollm2"], "power": POWER},
            ],
            "links": [
                {"a": "device", "b": "edge", "emulate": {"bandwidth": "5MB/s", "rtt": "5ms"}}
            ],
            "gateway": {"attempt_timeout": "10s", "probe_after_idle": "60s"},
        },
        "runs test spec",
    )
    cluster = LocalCluster(spec, tmp_path_factory.mktemp("runs"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def split_gw(split: LocalCluster) -> Iterator[httpx.Client]:
    key = read_api_key(split.state.state_dir)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=split.state.gateway_url, headers=headers, timeout=60) as client:
        yield client


def test_a_spent_run_budget_stops_new_steps(split_gw: httpx.Client) -> None:
    graph = {
        "task_nodes": [
            {"task": "Summarization", "arguments": ["Owls hunt at night and sleep by day."]},
            {"task": "Translation", "arguments": ["<node-0>", "French"]},
        ],
        "task_links": [{"source": "Summarization", "target": "Translation"}],
    }
    run = _run(split_gw, "Summarize, then French.", graph, max_usd=1e-9).json()
    first, second = run["steps"]
    assert first["status"] == "ok" and first["usd_modelled"] > 1e-9  # the edge is paid
    assert second["status"] == "skipped" and "max_usd" in second["error"]
    assert run["answered_by"] == "template"  # no chat call once the budget is spent
    record = split_gw.get(f"/v1/runs/{run['id']}").json()
    assert [r["id"] for r in record["records"]] == [first["request_id"]]


def test_a_node_lost_mid_run_fails_its_branch_and_the_rest_finishes(
    split: LocalCluster, split_gw: httpx.Client, photo_jpeg: bytes
) -> None:
    graph = {
        "task_nodes": [
            {"task": "Image Classification", "arguments": ["example.jpg"]},
            {"task": "Summarization", "arguments": ["Trains run on rails between cities."]},
            {"task": "Translation", "arguments": ["<node-1>", "German"]},
        ],
        "task_links": [{"source": "Summarization", "target": "Translation"}],
    }
    split.child("edge").process.kill()
    split.child("edge").process.wait()
    run = _run(split_gw, "Classify example.jpg; summarize; German.", graph, photo_jpeg).json()
    label, summary, german = run["steps"]
    assert label["status"] == "ok" and label["tiers"] == ["device"]
    assert summary["status"] == "failed" and summary["error"]
    assert german["status"] == "skipped"
    assert german["error"] == "needs the output of node 1 (Summarization), which has none"
    assert run["status"] == "partial" and run["answered_by"] == "template"
    assert label["output"]["text"] in run["answer"] and "Summarization" in run["answer"]
    record = split_gw.get(f"/v1/runs/{run['id']}").json()
    statuses = {r["id"]: r["status"] for r in record["records"]}
    assert statuses[label["request_id"]] == "ok"
    # The failed step is on the ledger too, and so is the answer's chat call, which no
    # plan could serve with the edge gone (the template answered instead).
    assert sorted(statuses.values()) == ["error", "ok", "rejected"]
    assert_ledger_balances(split.state.ledger_url)
