"""A running node's API, and every bad-input rule, against real node processes."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.conftest import RunningCluster
from tierwise.codecs import wire


@pytest.fixture
def device(cluster: RunningCluster) -> httpx.Client:
    with httpx.Client(
        base_url=cluster.state.node_url("device"),
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=60,
    ) as client:
        yield client


def _assert_error(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for needle in needles:
        assert needle in message, message


def _still_serving(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/models").status_code == 200


def test_health_is_open_and_names_the_node(cluster: RunningCluster) -> None:
    response = httpx.get(cluster.state.node_url("edge") + "/healthz")
    assert response.json() == {"status": "ok", "node": "edge", "tier": "edge"}


def test_info_lists_models_stages_and_emulation(device: httpx.Client) -> None:
    info = device.get("/v1/info").json()
    assert info["tier"] == "device"
    assert info["emulated"]["speed_factor"] == 0.25
    vision = next(m for m in info["models"] if m["name"] == "efficientnet-lite0")
    assert len(vision["split_points"]) >= 3
    assert vision["stages"][0]["input_shape"] == [3, 224, 224]
    assert vision["stages"][-1]["output_shape"] == [1000]
    assert info["wire_format"] == {"content_type": "application/x-tierwise-tensor", "version": 2}


def test_models_list_is_openai_shaped(device: httpx.Client) -> None:
    data = device.get("/v1/models").json()
    assert data["object"] == "list"
    assert {m["id"] for m in data["data"]} == {"smollm2", "efficientnet-lite0", "minilm"}


def test_metrics_are_prometheus_text(device: httpx.Client, photo_jpeg: bytes) -> None:
    device.post("/v1/vision/classify", params={"model": "efficientnet-lite0"}, content=photo_jpeg)
    text = device.get("/metrics").text
    assert 'tierwise_node_requests_total{route="/v1/vision/classify",status="200"}' in text
    assert 'tierwise_node_speed_factor{node="device",tier="device"} 0.25' in text


def test_classify_a_real_photo(device: httpx.Client, photo_jpeg: bytes) -> None:
    response = device.post(
        "/v1/vision/classify",
        params={"model": "efficientnet-lite0", "top_k": 3},
        content=photo_jpeg,
    )
    body = response.json()
    assert response.status_code == 200
    assert len(body["predictions"]) == 3
    # chelsea is a tabby cat: ImageNet's cat classes are 281-285.
    assert body["predictions"][0]["index"] in range(281, 286)
    assert body["tierwise"]["node"] == "device"


# ------------------------------------------------------------------ auth: 401


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]
)
def test_requests_without_the_right_token_get_401(
    cluster: RunningCluster, headers: dict[str, str]
) -> None:
    for node in ("device", "edge"):
        response = httpx.get(cluster.url(node) + "/v1/info", headers=headers)
        _assert_error(response, 401, "bearer token")
        assert response.headers["www-authenticate"] == "Bearer"


# ------------------------------------------------------------------ 400


@pytest.mark.parametrize("body", [b"", b"definitely not a jpeg", b"\xff\xd8\xff\xe0" + b"\0" * 100])
def test_undecodable_image_gets_400(device: httpx.Client, body: bytes) -> None:
    response = device.post(
        "/v1/vision/classify", params={"model": "efficientnet-lite0"}, content=body
    )
    _assert_error(response, 400, "image")
    _still_serving(device)


def test_undecodable_tensor_gets_400(device: httpx.Client) -> None:
    response = device.post(
        "/v1/stages/efficientnet-lite0/run", params={"start": 0, "end": 1}, content=b"garbage!" * 4
    )
    _assert_error(response, 400, "not a tierwise tensor")
    _still_serving(device)


def test_tensor_of_the_wrong_shape_gets_400(device: httpx.Client) -> None:
    payload = wire.encode_tensor(np.zeros((1, 3, 100, 100), dtype=np.float32))
    response = device.post(
        "/v1/stages/efficientnet-lite0/run", params={"start": 0, "end": 2}, content=payload
    )
    _assert_error(
        response, 400, "stage 0 of efficientnet-lite0 takes a batch of shape [N, 3, 224, 224]"
    )


def test_tensor_of_the_wrong_dtype_gets_400(device: httpx.Client) -> None:
    payload = wire.encode_tensor(np.zeros((1, 3, 224, 224), dtype=np.float16))
    response = device.post(
        "/v1/stages/efficientnet-lite0/run", params={"start": 0, "end": 1}, content=payload
    )
    _assert_error(response, 400, "float32")


def test_chat_with_n_greater_than_one_gets_400(device: httpx.Client) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    _assert_error(device.post("/v1/chat/completions", json=body), 400, "only n=1")


# ------------------------------------------------------------------ 404


def test_unknown_model_gets_404(device: httpx.Client, photo_jpeg: bytes) -> None:
    chat = {"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}
    _assert_error(
        device.post("/v1/chat/completions", json=chat), 404, "'gpt-17' is not hosted", "smollm2"
    )
    response = device.post(
        "/v1/vision/classify", params={"model": "efficientnet-lite2"}, content=photo_jpeg
    )
    _assert_error(response, 404, "efficientnet-lite2")
    _assert_error(
        device.post("/v1/chat/completions", json={**chat, "model": "efficientnet-lite0"}),
        404,
        "not a chat model",
    )


def test_unknown_stage_gets_404(device: httpx.Client) -> None:
    payload = wire.encode_tensor(np.zeros((1, 3, 224, 224), dtype=np.float32))
    for start, end in ((0, 9), (5, 5), (7, 8)):
        response = device.post(
            "/v1/stages/efficientnet-lite0/run",
            params={"start": start, "end": end},
            content=payload,
        )
        _assert_error(response, 404, "it has stages 0..6")
    response = device.post("/v1/stages/smollm2/run", params={"start": 0, "end": 1}, content=payload)
    _assert_error(response, 404, "not a staged vision model")
    _assert_error(device.get("/v1/nothing-here"), 404)


# ------------------------------------------------------------------ 413


def test_declared_oversize_payload_gets_413(device: httpx.Client) -> None:
    limit = device.get("/v1/info").json()["limits"]["max_request_bytes"]
    response = device.post(
        "/v1/stages/efficientnet-lite0/run",
        params={"start": 0, "end": 1},
        content=b"\0" * (limit + 1),
    )
    _assert_error(response, 413, f"at most {limit}")
    _still_serving(device)


def test_streamed_oversize_payload_gets_413(device: httpx.Client) -> None:
    limit = device.get("/v1/info").json()["limits"]["max_request_bytes"]

    def chunks():  # no Content-Length: the node must count as the body arrives
        for _ in range(limit // (1 << 20) + 2):
            yield b"\0" * (1 << 20)

    response = device.post(
        "/v1/stages/efficientnet-lite0/run", params={"start": 0, "end": 1}, content=chunks()
    )
    _assert_error(response, 413, "exceeds this node's limit")
    _still_serving(device)


# ------------------------------------------------------------------ 422


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"model": "smollm2", "messages": [', 400), (b"[]", 422)],
)
def test_malformed_json_gets_400_and_a_wrong_shape_422(
    device: httpx.Client, body: bytes, status: int
) -> None:
    response = device.post(
        "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == "invalid_body"
    _still_serving(device)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        (
            {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "temperature": 9},
            "temperature",
        ),
        (
            {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            "max_tokens",
        ),
    ],
)
def test_invalid_fields_get_422_naming_the_field(
    device: httpx.Client, body: dict, field: str
) -> None:
    response = device.post("/v1/chat/completions", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == field
    assert field in response.json()["error"]["message"]


def test_bad_query_values_get_422(device: httpx.Client, photo_jpeg: bytes) -> None:
    response = device.post(
        "/v1/vision/classify",
        params={"model": "efficientnet-lite0", "top_k": 0},
        content=photo_jpeg,
    )
    assert response.status_code == 422
    response = device.post(
        "/v1/stages/efficientnet-lite0/run", params={"start": "x", "end": 1}, content=b""
    )
    assert response.status_code == 422


def test_prompt_longer_than_the_context_gets_400(device: httpx.Client) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "word " * 4000}]}
    _assert_error(device.post("/v1/chat/completions", json=body), 400, "holds at most 2048")
    _still_serving(device)
