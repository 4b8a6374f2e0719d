"""Bad chat input at the gateway: each gets a clear 4xx naming the problem, never a crash.

Schema violations are 422 (the body parsed but is not a valid request), as everywhere in
tierwise; a body that cannot be parsed, or does not fit the model, is 400.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def _chat(gw: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    payload.update(body)
    return gw.post("/v1/chat/completions", json=payload)


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"messages": []}, 422, "messages"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, 422, "role"),
        ({"temperature": 7}, 422, "temperature"),
        ({"top_p": 0}, 422, "top_p"),
        ({"max_tokens": 0}, 422, "max_tokens"),
        ({"messages": [{"role": "user", "content": "word " * 5000}]}, 400, "context"),
        ({"max_tokens": 30000}, 400, "context"),
    ],
)
def test_bad_chat_requests_are_refused_clearly(
    gw: httpx.Client, body: dict[str, Any], status: int, names: str
) -> None:
    r = _chat(gw, **body)
    assert r.status_code == status, r.text
    assert names in r.json()["error"]["message"]


def test_non_utf8_bytes_are_a_400(gw: httpx.Client) -> None:
    raw = b'{"model": "auto", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    r = gw.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "UTF-8" in r.json()["error"]["message"]


def test_the_gateway_still_answers_after_bad_input(gw: httpx.Client) -> None:
    r = _chat(gw)
    assert r.status_code == 200, r.text
