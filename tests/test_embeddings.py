"""Sentence embeddings on the default cluster: the node's endpoint, the gateway's, and runs.

MiniLM is hosted on the device and the edge, so the planner chooses between them."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import RunningCluster
from tierwise.ledger.store import Ledger

SIMILAR = ("A cat sits on the mat.", "A kitten rests on a rug.")
UNRELATED = ("A cat sits on the mat.", "Interest rates rose by half a point in March.")


@pytest.fixture
def device(cluster: RunningCluster) -> Iterator[httpx.Client]:
    with cluster.node_client("device") as client:
        yield client


def _vectors(body: dict[str, Any]) -> np.ndarray:
    rows = sorted(body["data"], key=lambda d: d["index"])
    return np.array(
        [
            np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
            if isinstance(d["embedding"], str)
            else d["embedding"]
            for d in rows
        ],
        np.float32,
    )


# ---------------------------------------------------------------- the node


def test_a_node_embeds_texts_in_openai_s_shape(device: httpx.Client) -> None:
    texts = [SIMILAR[0], SIMILAR[1], UNRELATED[1]]
    response = device.post("/v1/embeddings", json={"model": "minilm", "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert [(d["object"], d["index"]) for d in body["data"]] == [("embedding", i) for i in range(3)]
    vectors = _vectors(body)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.5 > unrelated, (similar, unrelated)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] and usage["prompt_tokens"] > 3 * 2
    ext = body["tierwise"]
    assert ext["node"] == "device" and ext["compute_ms"] > 0
    assert ext["emulated_speed_factor"] == 0.25


def test_base64_carries_the_same_vectors_in_a_quarter_of_the_bytes(device: httpx.Client) -> None:
    asked = {"model": "minilm", "input": SIMILAR[0]}
    floats = device.post("/v1/embeddings", json=asked)
    packed = device.post("/v1/embeddings", json={**asked, "encoding_format": "base64"})
    assert isinstance(packed.json()["data"][0]["embedding"], str)
    np.testing.assert_allclose(_vectors(packed.json()), _vectors(floats.json()), atol=1e-6)
    assert len(packed.content) < len(floats.content) / 2.5


def test_the_node_lists_minilm_as_an_embedding_model(device: httpx.Client) -> None:
    models = {m["name"]: m for m in device.get("/v1/info").json()["models"]}
    assert models["minilm"]["task"] == "embeddings" and models["minilm"]["dimensions"] == 384


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"model": "minilm"}, "input", "input: required"),
        ({"model": "minilm", "input": []}, "input", "non-empty list"),
        ({"model": "minilm", "input": ""}, "input", "input: the text is empty"),
        ({"model": "minilm", "input": ["ok", "  "]}, "input", "input[1]: the text is empty"),
        ({"model": "minilm", "input": [[101, 2023]]}, "input", "token arrays are not supported"),
        ({"model": "minilm", "input": ["x"] * 257}, "input", "at most 256"),
        ({"model": "minilm", "input": "x", "encoding_format": "int8"}, "encoding_format", "int8"),
    ],
)
def test_bad_embedding_input_is_a_400_naming_the_field(
    device: httpx.Client, body: dict[str, Any], param: str, needle: str
) -> None:
    response = device.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"], error
    assert device.get("/healthz").status_code == 200


def test_embeddings_of_a_model_of_another_kind_get_404(device: httpx.Client) -> None:
    response = device.post("/v1/embeddings", json={"model": "smollm2", "input": "hi"})
    assert response.status_code == 404
    assert "not a sentence-embedding model" in response.json()["error"]["message"]


# ---------------------------------------------------------------- the gateway


def test_the_gateway_places_an_embedding_request_and_records_it(gw: httpx.Client) -> None:
    response = gw.post("/v1/embeddings", json={"model": "minilm", "input": list(SIMILAR)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert _vectors(body).shape == (2, 384) and isinstance(body["data"][0]["embedding"], list)
    ext = body["tierwise"]
    assert ext["plan"] in ("embed@device/minilm", "embed@edge/minilm")
    assert response.headers["X-Tierwise-Plan"] == ext["plan"]
    assert ext["predicted"]["latency_ms"] > 0 and ext["measured"]["latency_ms"] > 0
    if ext["plan"] == "embed@edge/minilm":  # texts went up, base64 vectors came down
        assert 300 < ext["measured"]["bytes_up"] < 1000
        assert 2 * 2048 < ext["measured"]["bytes_down"] < 2 * 2048 + 1500
    record = gw.get(f"/v1/requests/{ext['request_id']}").json()
    assert record["task"] == "embed" and record["plan"] == ext["plan"]
    assert record["tokens_in"] == body["usage"]["prompt_tokens"]
    considered = {c["plan"] for c in record["explain"]["considered"]}
    assert considered == {"embed@device/minilm", "embed@edge/minilm"}


def test_the_openai_client_gets_embeddings_from_the_gateway(
    cluster: RunningCluster, api_key: str
) -> None:
    client = openai.OpenAI(
        base_url=cluster.state.gateway_url + "/v1", api_key=api_key, max_retries=0
    )
    reply = client.embeddings.create(model="minilm", input=list(UNRELATED))
    client.close()
    a, b = (np.asarray(d.embedding) for d in reply.data)
    assert len(a) == 384 and abs(float(a @ b)) < 0.5
    assert reply.usage.prompt_tokens > 0


def test_private_texts_are_embedded_on_the_device(gw: httpx.Client) -> None:
    local = {"X-Tierwise-Policy": "privacy=raw-stays-local"}
    response = gw.post("/v1/embeddings", json={"model": "minilm", "input": "hello"}, headers=local)
    assert response.json()["tierwise"]["plan"] == "embed@device/minilm"
    pii = {"X-Tierwise-Policy": "privacy=pii-stays-local"}
    text = "Write to jane.doe@example.com about the invoice."
    asked = {"model": "minilm", "input": text}
    ext = gw.post("/v1/embeddings", json=asked, headers=pii).json()["tierwise"]
    assert ext["plan"] == "embed@device/minilm"
    assert ext["privacy"] == {"pii": ["email"], "action": "kept-on-device"}
    edge = {"X-Tierwise-Plan": "embed@edge/minilm", **pii}
    refused = gw.post("/v1/embeddings", json={"model": "minilm", "input": text}, headers=edge)
    assert refused.status_code == 404 and "privacy" in refused.json()["error"]["message"]


def test_bad_embedding_requests_to_the_gateway_are_refused_and_recorded(
    gw: httpx.Client, cluster: RunningCluster
) -> None:
    empty = gw.post("/v1/embeddings", json={"model": "minilm", "input": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    unknown = gw.post("/v1/embeddings", json={"model": "bert-9000", "input": "hi"})
    assert unknown.status_code == 404 and "minilm" in unknown.json()["error"]["message"]
    store = Ledger(cluster.state.ledger_url)
    rejected = [r for r in store.rows() if r["task"] == "embed" and r["status"] == "rejected"]
    store.close()
    assert {r["model"] for r in rejected} >= {"minilm", "bert-9000"}


def test_the_gateway_lists_minilm(gw: httpx.Client) -> None:
    assert "minilm" in {m["id"] for m in gw.get("/v1/models").json()["data"]}


# ---------------------------------------------------------------- runs


def _similarity(gw: httpx.Client, pair: tuple[str, str], **headers: str) -> dict[str, Any]:
    graph = {"task_nodes": [{"task": "Sentence Similarity", "arguments": list(pair)}]}
    body = {"input": "How close in meaning are these two sentences?", "graph": graph}
    response = gw.post("/v1/runs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def test_a_run_scores_sentence_similarity(gw: httpx.Client) -> None:
    run = _similarity(gw, SIMILAR)
    assert run["status"] == "ok" and run["answered_by"] == "last step"
    (step,) = run["steps"]
    assert step["output"]["kind"] == "text" and run["answer"] == step["output"]["text"]
    assert 0.5 < float(run["answer"]) <= 1.0 and "cosine" in step["output"]["detail"]
    assert step["plan"] in ("embed@device/minilm", "embed@edge/minilm")
    record = gw.get(f"/v1/runs/{run['id']}").json()
    ((embedded),) = record["records"]
    assert embedded["run_id"] == run["id"] and embedded["task"] == "embed"
    local = _similarity(gw, UNRELATED, **{"X-Tierwise-Policy": "privacy=raw-stays-local"})
    assert local["steps"][0]["tiers"] == ["device"]
    assert float(local["answer"]) < float(run["answer"])
