"""The OpenAI-compatible remote adapter: what it sends, and a real node used as the remote."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest

from tests.conftest import RunningCluster
from tests.fake_openai import SSEHandler, delta, usage
from tierwise.config import parse_spec
from tierwise.errors import UpstreamError
from tierwise.models.base import ChatMessage, ChatParams, ResponseFormat
from tierwise.models.openai_remote import OpenAIRemoteChat
from tierwise.runtime.launcher import LocalCluster


class _Recorder(SSEHandler):
    """Records each request and answers with a fixed two-chunk SSE stream."""

    requests: ClassVar[list[dict[str, Any]]] = []
    reply_usage: ClassVar[bool] = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        events = [delta("Hel"), delta("lo", "stop")]
        if self.reply_usage:
            events.append(usage(11, 2))
        self.send_sse(events)


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.requests = []
    _Recorder.reply_usage = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_adapter_sends_an_openai_request_with_key_and_usage_option(recorder: str) -> None:
    model = OpenAIRemoteChat("cloud-gpt", recorder, "gpt-4o-mini", api_key="sk-test", timeout=5)
    result = model.complete(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
        ChatParams(max_tokens=9, temperature=0.1, stop=("END",), seed=4),
    )
    model.close()
    assert result.text == "Hello" and result.finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 2)
    sent = _Recorder.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-test"
    assert sent["body"]["model"] == "gpt-4o-mini"
    assert sent["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {
        "include_usage": True
    }
    assert (sent["body"]["max_tokens"], sent["body"]["stop"], sent["body"]["seed"]) == (
        9,
        ["END"],
        4,
    )


def test_adapter_forwards_the_response_format(recorder: str) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    model = OpenAIRemoteChat("cloud-gpt", recorder, "gpt-4o-mini", api_key=None, timeout=5)
    for fmt in (
        ResponseFormat("json_schema", json.dumps(schema), "verdict", strict=True),
        ResponseFormat("json_object"),
    ):
        model.complete([ChatMessage("user", "Hi")], ChatParams(response_format=fmt))
    model.complete([ChatMessage("user", "Hi")], ChatParams())
    model.close()
    sent = [r["body"].get("response_format") for r in _Recorder.requests]
    assert sent == [
        {
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": schema, "strict": True},
        },
        {"type": "json_object"},
        None,
    ]


def test_adapter_refuses_a_remote_that_reports_no_usage(recorder: str) -> None:
    _Recorder.reply_usage = False
    model = OpenAIRemoteChat("cloud-gpt", recorder, "m", api_key=None, timeout=5)
    with pytest.raises(UpstreamError, match="sent no token usage"):
        model.complete([ChatMessage("user", "Hi")], ChatParams())
    model.close()
    assert "Authorization" not in _Recorder.requests[0]["headers"]


def test_adapter_against_one_of_our_nodes(cluster: RunningCluster) -> None:
    model = OpenAIRemoteChat(
        "relay", cluster.url("edge") + "/v1", "smollm2", cluster.token, timeout=60
    )
    params = ChatParams(max_tokens=12, temperature=0.0, seed=1)
    streamed = list(model.stream([ChatMessage("user", "Name a fruit.")], params))
    model.close()
    assert len(streamed) > 2
    final = streamed[-1]
    assert final.usage is not None and 0 < final.usage.completion_tokens <= 12
    assert final.usage.prompt_tokens > 5


def test_adapter_turns_remote_errors_into_upstream_errors(cluster: RunningCluster) -> None:
    model = OpenAIRemoteChat(
        "relay", cluster.url("edge") + "/v1", "no-such-model", cluster.token, timeout=10
    )
    with pytest.raises(UpstreamError, match="answered 404: model 'no-such-model' is not hosted"):
        model.complete([ChatMessage("user", "Hi")], ChatParams())
    model.close()
    dead = OpenAIRemoteChat("relay", "http://127.0.0.1:9/v1", "m", None, timeout=2)
    with pytest.raises(UpstreamError, match="failed"):
        dead.complete([ChatMessage("user", "Hi")], ChatParams())
    dead.close()


def test_a_remote_api_can_be_a_node(cluster: RunningCluster, tmp_path: Path) -> None:
    """A cloud node whose only model is another endpoint: here, the session cluster's edge."""
    spec = parse_spec(
        {
            "name": "relay",
            "models": {
                "cloud-llm": {
                    "kind": "openai-remote",
                    "base_url": cluster.state.node_url("edge") + "/v1",
                    "remote_model": "smollm2",
                    "api_key_env": "RELAY_API_KEY",
                }
            },
            "prices": {
                "tokens": {"cloud-llm": {"input": 0, "output": 0, "source": "our own node"}}
            },
            "nodes": [
                {
                    "name": "api",
                    "tier": "cloud",
                    "models": ["cloud-llm"],
                    "power": {
                        "active_watts": 1,
                        "idle_watts": 0,
                        "source": "remote: not ours to measure",
                    },
                }
            ],
        }
    )
    env = {"PATH": "/usr/bin:/bin", "RELAY_API_KEY": cluster.token}
    with LocalCluster(spec, tmp_path / "relay", env=env) as relay:
        client = openai.OpenAI(
            base_url=relay.state.node_url("api") + "/v1", api_key=relay.token, max_retries=0
        )
        reply = client.chat.completions.create(
            model="cloud-llm", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
        )
        client.close()
    assert reply.choices[0].message.content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    assert reply.model_extra is not None and reply.model_extra["tierwise"]["node"] == "api"


def test_remote_node_without_its_api_key_fails_to_start_with_a_clear_message(
    tmp_path: Path,
) -> None:
    spec = parse_spec(
        {
            "models": {
                "m": {
                    "kind": "openai-remote",
                    "base_url": "http://127.0.0.1:9/v1",
                    "remote_model": "x",
                    "api_key_env": "MISSING_KEY",
                }
            },
            "prices": {"tokens": {"m": {"input": 1, "output": 2, "source": "test"}}},
            "nodes": [
                {
                    "name": "api",
                    "tier": "cloud",
                    "models": ["m"],
                    "power": {"active_watts": 1, "idle_watts": 0, "source": "test"},
                }
            ],
        }
    )
    cluster = LocalCluster(spec, tmp_path / "s", env={"PATH": "/usr/bin:/bin"}, startup_timeout=60)
    with pytest.raises(Exception, match="MISSING_KEY is not set"):
        cluster.start()
