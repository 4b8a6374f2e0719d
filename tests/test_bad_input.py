"""Bad input, at the gateway and at a node: a 4xx naming the field, never a 500.

Each case comes from an outside tester's report (issue 26): schema errors in
``/v1/tasks``, a policy that is not an object, a lone surrogate, a malformed TIFF on which
Pillow raises TypeError, an image that declares 144 megapixels, infinite limits,
non-boolean booleans, non-JSON and oversized bodies. Every one carries a canary string
where a prompt would be, and no log file of the cluster may contain it afterwards.
Errors after authentication leave a ledger record; ``/metrics`` is for an admin key.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import GUEST, RunningCluster
from tierwise.errors import ImageDecodeError, PayloadTooLargeError
from tierwise.runtime.images import MAX_PIXELS, decode_image

CANARY = "canary-4111111111111111-jane.doe@example.com"
USER = {"role": "user", "content": f"my card is {CANARY}"}

#: 158 bytes: a deflate TIFF whose tags were mutated so that Pillow's TIFF plug-in raises
#: TypeError ("'float' object cannot be interpreted as an integer") while reading it; found
#: by mutating a 16×16 TIFF (random.Random(7)), like the 908-byte file of issue 26
BAD_TIFF = base64.b64decode(
    "SUkqABoAAAB4nDvBxXViFO+ikYoAQmXcAQAKAAABAwABAAAAEAAAAAEBAwABAAAAEAAAAAIBAwADAAAA"
    "mAAAAAMBGgABAAAACAAAAAYBAwABAAAAAgAAABEBCwABAAAACAAAABUBAwABAAAAAwAAABYBfwABAAAA"
    "EAAAABcBBAABAAB/EQAAAByfAwABAAAAAQAAAAAAAAAIAAgACAA="
)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` RGB pixels and holds one empty IDAT: what
    a decompression bomb looks like before it is decoded (a few dozen bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [USER], "max_tokens": 4, **fields}


def _error(r: httpx.Response, status: int, param: str) -> str:
    """Assert a 4xx of ``status`` whose ``param`` starts with ``param``; its message."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["param"] or "").startswith(param), error
    assert CANARY not in error["message"]  # the error never echoes the prompt back
    return str(error["message"])


# ---------------------------------------------------------------- schema errors


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"task": "classify"}, 422, "image_base64"),
        ({"task": "chat", "model": "auto", "messages": []}, 422, "messages"),
        ({"task": "classify", "image_base64": "aGk=", "top_k": 0}, 422, "top_k"),
        ({"task": "classify", "image_base64": "aGk=", "top_k": -1}, 422, "top_k"),
        ({"task": "classify", "image_base64": "aGk=", "prompt": CANARY}, 422, "prompt"),
        ({"task": "chat", **_chat(temperature=CANARY)}, 422, "temperature"),
        ({"task": "translate", "text": CANARY}, 400, "task"),
        ({"task": "chat", **_chat(tierwise={"policy": "x"})}, 400, "tierwise.policy"),
        ({"task": "chat", **_chat(stream="yes")}, 422, "stream"),
    ],
)
def test_task_schema_errors_are_4xx_naming_the_field(
    gw: httpx.Client, body: dict[str, Any], status: int, param: str
) -> None:
    _error(gw.post("/v1/tasks", json=body), status, param)


def _nested(depth: int) -> dict[str, Any]:
    value: Any = CANARY
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/chat/completions"])
def test_deeply_nested_json_is_refused(gw: httpx.Client, path: str) -> None:
    # Deep enough to pass the JSON reader but not the depth check, then past the reader.
    _error(gw.post(path, json={"task": "chat", **_chat(tierwise=_nested(100))}), 400, "tierwise")
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    r = gw.post(path, content=deep, headers={"Content-Type": "application/json"})
    _error(r, 400, "body" if path == "/v1/tasks" else "")


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"tierwise": {"policy": "x"}}, 400, "tierwise.policy"),
        ({"tierwise": {"policy": {"max_latency_ms": 1e999}}}, 400, "policy"),
        ({"tierwise": {"policy": {"max_usd": float("nan")}}}, 400, "policy"),
        ({"stream": "yes"}, 422, "stream"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, 422, "stream_options"),
    ],
)
def test_chat_option_errors(
    gw: httpx.Client, fields: dict[str, Any], status: int, param: str
) -> None:
    # json.dumps writes infinity as Infinity and nan as NaN, as JavaScript's JSON.parse
    # would not but Python's reader accepts; 1e999 is plain JSON and reads as infinity too
    text = json.dumps(_chat(**fields)).replace("Infinity", "1e999")
    headers = {"Content-Type": "application/json"}
    _error(gw.post("/v1/chat/completions", content=text, headers=headers), status, param)


def test_an_infinite_latency_limit_in_the_header_is_refused(gw: httpx.Client) -> None:
    headers = {"X-Tierwise-Policy": "max_latency_ms=1e999"}
    _error(gw.post("/v1/chat/completions", json=_chat(), headers=headers), 400, "policy")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_chat_body_that_is_not_json_is_a_400(gw: httpx.Client, content_type: str) -> None:
    r = gw.post(
        "/v1/chat/completions",
        content=f"model=auto&prompt={CANARY}",
        headers={"Content-Type": content_type},
    )
    assert "JSON" in _error(r, 400, "body")


def test_a_chunked_body_over_the_limit_is_a_413(gw: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it comes
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(17):
            yield b"x" * (1 << 20)
        yield b'"}]}'

    r = gw.post("/v1/chat/completions", content=chunks())
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"


# ---------------------------------------------------------------- text


def _surrogate_chat(stream: bool) -> bytes:
    # json.dumps escapes the lone surrogate as \ud800, which is how a client sends it
    content = f"{CANARY} \ud800"
    return json.dumps(
        _chat(messages=[{"role": "user", "content": content}], stream=stream)
    ).encode()


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_is_refused_at_the_door(gw: httpx.Client, stream: bool) -> None:
    headers = {"Content-Type": "application/json"}
    r = gw.post("/v1/chat/completions", content=_surrogate_chat(stream), headers=headers)
    assert "Unicode" in _error(r, 400, "messages.0.content")
    task = b'{"task": "chat", ' + _surrogate_chat(stream)[1:]
    _error(gw.post("/v1/tasks", content=task, headers=headers), 400, "messages.0.content")


def test_a_lone_surrogate_in_embeddings_and_at_a_node(cluster: RunningCluster) -> None:
    body = b'{"model": "minilm", "input": ["fine", "' + CANARY.encode() + b' \\udfff"]}'
    headers = {"Content-Type": "application/json"}
    with cluster.node_client("device") as node:
        _error(node.post("/v1/embeddings", content=body, headers=headers), 400, "input.1")
        chat = _surrogate_chat(False).replace(b'"auto"', b'"smollm2"')
        r = node.post("/v1/chat/completions", content=chat, headers=headers)
        _error(r, 400, "messages.0.content")


# ---------------------------------------------------------------- images


# Pillow warns about the mutated tags first (servers log it; pytest makes it an error)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_decoder_error_is_a_400() -> None:
    with pytest.raises(ImageDecodeError, match="TypeError"):
        decode_image(BAD_TIFF)
    for data in (b"GIF89a" + b"\0" * 20, _png_header(16, 16)[:40], b"II*\0" + b"\xff" * 60):
        with pytest.raises(ImageDecodeError):
            decode_image(data)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    started = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match=f"{MAX_PIXELS:,}") as caught:
        decode_image(_png_header(12_000, 12_000), param="image")
    assert time.perf_counter() - started < 0.1
    assert caught.value.param == "image"


def test_bad_images_at_the_gateway_and_a_node(cluster: RunningCluster, gw: httpx.Client) -> None:
    bomb = _png_header(12_000, 12_000)
    r = gw.post("/v1/vision/classify", content=BAD_TIFF)
    assert "TypeError" in _error(r, 400, "")
    assert "pixels" in _error(gw.post("/v1/vision/classify", content=bomb), 413, "image")
    task = {"task": "classify", "image_base64": base64.b64encode(bomb).decode()}
    _error(gw.post("/v1/tasks", json=task), 413, "image")
    with cluster.node_client("device") as node:
        params = {"model": "efficientnet-lite0"}
        _error(node.post("/v1/vision/classify", params=params, content=BAD_TIFF), 400, "")
        _error(node.post("/v1/vision/classify", params=params, content=bomb), 413, "image")
        stage = {"start": 0, "end": 2}
        headers = {"Content-Type": "image/png"}
        r = node.post(
            "/v1/stages/efficientnet-lite0/run", params=stage, content=bomb, headers=headers
        )
        _error(r, 413, "image")


def test_decoding_a_large_photo_does_not_block_healthz(
    cluster: RunningCluster, gw: httpx.Client
) -> None:
    """Three 25-megapixel PNGs at once (under the limit, so decoded): /healthz still
    answers quickly, because decoding and resizing run on worker threads."""
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), (120, 80, 40)).save(buf, format="PNG", compress_level=1)
    photo, answers, slowest = buf.getvalue(), [], 0.0

    def classify() -> None:
        answers.append(gw.post("/v1/vision/classify", content=photo).status_code)

    threads = [threading.Thread(target=classify) for _ in range(3)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=cluster.state.gateway_url, timeout=30) as probe:
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.02)
    for t in threads:
        t.join()
    assert answers == [200] * 3
    assert slowest < 1.0, f"/healthz took {slowest:.2f} s while photos were decoded"


# ---------------------------------------------------------------- records, logs, access


def _rejected(cluster: RunningCluster, key: str) -> list[str]:
    path = cluster.state.ledger_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT error FROM requests WHERE api_key = ? AND status = 'rejected'", (key,)
        ).fetchall()
    return [row[0] for row in rows]


def test_every_error_after_authentication_is_recorded(
    cluster: RunningCluster, guest_key: str
) -> None:
    bad = [
        ("/v1/chat/completions", {"json": _chat(messages=[])}),
        ("/v1/chat/completions", {"json": _chat(tierwise={"policy": "x"})}),
        ("/v1/chat/completions", {"content": b"not json"}),
        ("/v1/tasks", {"json": {"task": "classify", "top_k": 0}}),
        ("/v1/tasks", {"json": {"task": "nope"}}),
        ("/v1/vision/classify", {"content": BAD_TIFF}),
        ("/v1/embeddings", {"json": {"model": "minilm", "input": []}}),
        ("/v1/runs", {"json": {"input": ""}}),
    ]
    before = len(_rejected(cluster, GUEST))
    headers = {"Authorization": f"Bearer {guest_key}"}
    with httpx.Client(base_url=cluster.state.gateway_url, headers=headers, timeout=60) as guest:
        for path, kwargs in bad:
            assert 400 <= guest.post(path, **kwargs).status_code < 500, path
        # no key: refused before authentication, so no record (nobody to record it for)
        assert guest.post("/v1/tasks", json={}, headers={"Authorization": ""}).status_code == 401
    after = _rejected(cluster, GUEST)
    assert len(after) - before == len(bad), after[before:]


def test_no_log_holds_a_prompt(cluster: RunningCluster, gw: httpx.Client) -> None:
    """Runs after the cases above (file order): each sent the canary where a prompt goes."""
    assert gw.post("/v1/chat/completions", json=_chat()).status_code == 200
    logs = sorted(cluster.state.state_dir.rglob("*.log"))
    assert logs, "the cluster wrote no logs"
    for path in logs:
        assert CANARY not in path.read_text(errors="replace"), path


def test_metrics_need_an_admin_key_or_the_node_token(
    cluster: RunningCluster, gw: httpx.Client, guest_key: str
) -> None:
    assert gw.get("/metrics").status_code == 200  # the default key is the admin's
    url = cluster.state.gateway_url
    for token, status in ((guest_key, 403), (cluster.token, 200), ("nonsense", 401)):
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status, (token, r.text)
    assert httpx.get(f"{url}/metrics").status_code == 401


def test_a_key_sees_only_its_own_records(
    cluster: RunningCluster, gw: httpx.Client, guest_key: str
) -> None:
    mine = gw.post("/v1/chat/completions", json=_chat()).json()["tierwise"]["request_id"]
    assert gw.get(f"/v1/requests/{mine}").status_code == 200
    headers = {"Authorization": f"Bearer {guest_key}"}
    r = httpx.get(f"{cluster.state.gateway_url}/v1/requests/{mine}", headers=headers)
    assert r.status_code == 404
