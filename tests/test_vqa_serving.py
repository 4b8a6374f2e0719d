"""Visual question answering served: a tiny easy-vqa network on a device and an edge node.

The network is trained for a few seconds, so its answers are often wrong; what is checked
is that they are real answers of the model, placed, recorded and labelled as a toy's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.vqa_helper import ANSWERS, shape_png, tiny_vqa_net
from tierwise.config import parse_spec
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import read_api_key

POWER = {"active_watts": 10, "idle_watts": 1, "source": "test fixture"}
QUESTION = "what color is the shape?"


@pytest.fixture(scope="module")
def net_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vqa_net(tmp_path_factory.mktemp("vqa-net"))


@pytest.fixture(scope="module")
def vqa_cluster(net_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    spec = parse_spec(
        {
            "name": "vqa",
            "variants_dir": None,
            "codecs_dir": None,
            "models": {"vqa-net": {"kind": "vqa-net", "path": str(net_path)}},
            "nodes": [
                {"name": "device", "tier": "device", "models": ["vqa-net"], "power": POWER},
                {"name": "edge", "tier": "edge", "models": ["vqa-net"], "power": POWER},
            ],
            "links": [
                {"a": "device", "b": "edge", "emulate": {"bandwidth": "5MB/s", "rtt": "5ms"}}
            ],
            "gateway": {"attempt_timeout": "10s", "probe_after_idle": "60s"},
        },
        "vqa test spec",
    )
    cluster = LocalCluster(spec, tmp_path_factory.mktemp("vqa-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def node(vqa_cluster: LocalCluster) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {vqa_cluster.token}"}
    url = vqa_cluster.state.node_url("device")
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
def gw(vqa_cluster: LocalCluster) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {read_api_key(vqa_cluster.state.state_dir)}"}
    url = vqa_cluster.state.gateway_url
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        yield client


def _ask(client: httpx.Client, image: bytes, question: str | None = QUESTION, **extra: Any) -> Any:
    params = {"model": "vqa-net", **({"question": question} if question is not None else {})}
    return client.post("/v1/vision/vqa", params=params, content=image, **extra)


# ---------------------------------------------------------------- the node


def test_a_node_answers_with_one_of_its_answers_and_says_what_it_knows(node: httpx.Client) -> None:
    response = _ask(node, shape_png())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] in ANSWERS and 0 < body["probability"] <= 1
    assert body["question"] == QUESTION and body["unknown_words"] == []
    assert "easy-vqa toy model" in body["note"] and "13 words" in body["note"]
    assert body["tierwise"]["node"] == "device" and body["tierwise"]["compute_ms"] > 0


def test_any_picture_is_resized_and_unknown_words_are_named(node: httpx.Client) -> None:
    body = _ask(node, shape_png(size=150, colour="blue"), "what is the meaning of life?").json()
    assert body["answer"] in ANSWERS  # a toy answers anything: hence the note
    assert body["unknown_words"] == ["meaning", "life"]


def test_the_node_lists_the_network_with_its_answers_and_accuracy(node: httpx.Client) -> None:
    (entry,) = node.get("/v1/info").json()["models"]
    assert entry["task"] == "visual-question-answering" and set(entry["answers"]) == ANSWERS
    assert 0 < entry["measured"]["test_accuracy"] <= 1


@pytest.mark.parametrize(
    ("image", "question", "param", "needle"),
    [
        (b"", QUESTION, "image", "the request body is empty"),
        (b"not a picture", QUESTION, "image", "cannot decode"),
        (None, "", "question", "ask a question"),
        (None, None, "question", "ask a question"),
        (None, "   ", "question", "ask a question"),
        (None, "why? " * 200, "question", "at most 500"),
    ],
)
def test_bad_vqa_input_is_a_400_naming_the_field(
    node: httpx.Client, image: bytes | None, question: str | None, param: str, needle: str
) -> None:
    response = _ask(node, shape_png() if image is None else image, question)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"], error
    assert node.get("/healthz").status_code == 200


def test_vqa_with_a_model_of_another_kind_or_none_gets_404(node: httpx.Client) -> None:
    response = node.post("/v1/vision/vqa", params={"model": "nope", "question": "x"}, content=b"x")
    assert response.status_code == 404 and "VQA models here: ['vqa-net']" in response.text


# ---------------------------------------------------------------- the gateway


def test_the_gateway_places_a_question_and_records_it(gw: httpx.Client) -> None:
    response = _ask(gw, shape_png())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] in ANSWERS and "easy-vqa" in body["note"]
    ext = body["tierwise"]
    assert ext["plan"] in ("vqa@device/vqa-net", "vqa@edge/vqa-net")
    assert 0 < ext["predicted"]["quality"] <= 1  # the card's test accuracy
    record = gw.get(f"/v1/requests/{ext['request_id']}").json()
    assert record["task"] == "vqa" and record["status"] == "ok"
    assert {c["plan"] for c in record["explain"]["considered"]} == {
        "vqa@device/vqa-net",
        "vqa@edge/vqa-net",
    }


def test_a_question_sent_to_the_edge_carries_the_image(gw: httpx.Client) -> None:
    image = shape_png(size=200)
    ext = _ask(gw, image, headers={"X-Tierwise-Plan": "vqa@edge/vqa-net"}).json()["tierwise"]
    assert ext["plan"] == "vqa@edge/vqa-net" and ext["tiers"] == ["edge"]
    assert len(image) < ext["measured"]["bytes_up"] < len(image) + 1000


@pytest.mark.parametrize("privacy", ["raw-stays-local", "pii-stays-local", "features-may-leave"])
def test_the_image_stays_on_the_device_when_the_policy_says_so(
    gw: httpx.Client, privacy: str
) -> None:
    headers = {"X-Tierwise-Policy": f"privacy={privacy}"}
    ext = _ask(gw, shape_png(), headers=headers).json()["tierwise"]
    assert ext["plan"] == "vqa@device/vqa-net"
    pinned = {**headers, "X-Tierwise-Plan": "vqa@edge/vqa-net"}
    refused = _ask(gw, shape_png(), headers=pinned)
    assert refused.status_code == 404 and "privacy" in refused.json()["error"]["message"]


def test_bad_questions_to_the_gateway_are_refused(gw: httpx.Client) -> None:
    assert _ask(gw, b"").json()["error"]["param"] == "image"
    assert _ask(gw, shape_png(), "").json()["error"]["param"] == "question"
    unknown = gw.post("/v1/vision/vqa", params={"model": "x", "question": "y"}, content=b"z")
    assert unknown.status_code == 404 and "vqa-net" in unknown.json()["error"]["message"]


# ---------------------------------------------------------------- runs


def test_a_run_asks_a_question_about_an_attached_picture(gw: httpx.Client) -> None:
    graph = {
        "task_nodes": [{"task": "Visual Question Answering", "arguments": ["shape.png", QUESTION]}]
    }
    files = {"shape.png": base64.b64encode(shape_png()).decode()}
    body = {"input": "What color is the shape in shape.png?", "files": files, "graph": graph}
    headers = {"X-Tierwise-Policy": "privacy=raw-stays-local"}
    response = gw.post("/v1/runs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    run = response.json()
    (step,) = run["steps"]
    assert run["status"] == "ok" and step["output"]["kind"] == "label"
    assert run["answer"] == step["output"]["text"] and run["answer"] in ANSWERS
    assert "%" in step["output"]["detail"] and "easy-vqa toy model" in step["output"]["detail"]
    assert step["plan"] == "vqa@device/vqa-net" and step["tiers"] == ["device"]
    (record,) = gw.get(f"/v1/runs/{run['id']}").json()["records"]
    assert record["run_id"] == run["id"] and record["task"] == "vqa"


def test_a_run_without_a_question_asks_the_request_itself(gw: httpx.Client) -> None:
    graph = {"task_nodes": [{"task": "Visual Question Answering", "arguments": ["shape.png"]}]}
    files = {"shape.png": base64.b64encode(shape_png(colour="green")).decode()}
    body = {"input": "Is there a circle in shape.png?", "files": files, "graph": graph}
    run = gw.post("/v1/runs", json=body).json()
    assert run["status"] == "ok" and run["answer"] in ANSWERS
