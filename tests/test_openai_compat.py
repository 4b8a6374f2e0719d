"""The official ``openai`` client talks to our nodes unchanged, streaming or not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from tests.conftest import RunningCluster
from tierwise.models.base import ChatMessage
from tierwise.models.llama_cpp_chat import LlamaCppChat

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What colour is the sky on a clear day?"},
]


@pytest.fixture
def clients(cluster: RunningCluster) -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes OpenAI clients for a node (as seen from the device tier) and closes them after."""
    made: list[openai.OpenAI] = []

    def make(node: str, api_key: str | None = None) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=cluster.url(node) + "/v1", api_key=api_key or cluster.token, max_retries=0
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_non_streaming_chat_reports_real_token_counts(
    clients: Callable[..., openai.OpenAI], smollm2: LlamaCppChat
) -> None:
    client = clients("device")
    reply = client.chat.completions.create(
        model="smollm2", messages=MESSAGES, max_tokens=40, temperature=0
    )
    assert reply.object == "chat.completion"
    text = reply.choices[0].message.content
    assert text and text.strip()
    assert reply.usage is not None
    expected_prompt = len(smollm2.prompt_tokens([ChatMessage(**m) for m in MESSAGES]))  # type: ignore[arg-type]
    assert reply.usage.prompt_tokens == expected_prompt
    assert 0 < reply.usage.completion_tokens <= 40
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.model_extra is not None and reply.model_extra["tierwise"]["tier"] == "device"


def test_max_tokens_cuts_the_answer_at_exactly_that_many_tokens(
    clients: Callable[..., openai.OpenAI],
) -> None:
    reply = clients("edge").chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Tell me a long story about a fox."}],
        max_tokens=7,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 7


def test_streaming_through_a_link_matches_non_streaming(
    cluster: RunningCluster, clients: Callable[..., openai.OpenAI]
) -> None:
    """Reached from the device tier, the cloud node streams through the device-cloud link."""
    client = clients("cloud")
    assert cluster.url("cloud") != cluster.state.node_url("cloud")  # via the link proxy
    whole = client.chat.completions.create(
        model="smollm2", messages=MESSAGES, max_tokens=30, temperature=0, seed=3
    )
    stream = client.chat.completions.create(
        model="smollm2",
        messages=MESSAGES,
        max_tokens=30,
        temperature=0,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert len([p for p in pieces if p]) > 1  # really streamed, not one blob
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_stream_without_usage_option_sends_no_usage_chunk(
    clients: Callable[..., openai.OpenAI],
) -> None:
    stream = clients("device").chat.completions.create(
        model="smollm2", messages=MESSAGES, max_tokens=5, stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_sequence_is_honoured(clients: Callable[..., openai.OpenAI]) -> None:
    reply = clients("edge").chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        max_tokens=40,
        temperature=0,
        stop=["5"],
    )
    text = reply.choices[0].message.content or ""
    assert "5" not in text and "4" in text
    assert reply.choices[0].finish_reason == "stop"


def test_openai_client_errors_carry_our_messages(clients: Callable[..., openai.OpenAI]) -> None:
    client = clients("device")
    with pytest.raises(openai.NotFoundError, match="not hosted on this node"):
        client.chat.completions.create(model="gpt-17", messages=MESSAGES)
    bad = clients("device", api_key="wrong")
    with pytest.raises(openai.AuthenticationError, match="wrong bearer token"):
        bad.models.list()
    models = client.models.list()
    assert {m.id for m in models.data} == {"smollm2", "efficientnet-lite0", "minilm"}
