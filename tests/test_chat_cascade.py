"""The live cascade: SmolLM2 on the device first, the cloud only when it was unsure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.money import assert_ledger_balances
from tests.recording_cluster import (
    PLAIN_KEY,
    Echo,
    Recording,
    ask,
    fetch_record,
    recording_cluster,
    wait_until_the_cloud_is_reachable,
)
from tierwise.gateway.chat.cascade import confidence


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    yield from recording_cluster(tmp_path_factory.mktemp("cascade"))


def test_confidence_is_the_geometric_mean_token_probability() -> None:
    assert confidence({"mean_logprob": -0.6931471805599453}) == pytest.approx(0.5)
    assert confidence({}) is None


@pytest.mark.parametrize("stream", [False, True])
def test_a_sure_local_answer_is_kept(recording: Recording, stream: bool) -> None:
    sent = len(Echo.raw)
    text, ext = ask(
        recording.plain,
        "Say hello.",
        "any",
        stream=stream,
        model="auto",
        policy={"cascade_confidence": 0.01},
    )
    assert ext["plan"] == "chat@device/smollm2" and text
    assert ext["cascade"]["escalated"] is False
    assert 0.01 <= ext["cascade"]["confidence"] <= 1.0
    assert len(Echo.raw) == sent


@pytest.mark.parametrize("stream", [False, True])
def test_an_unsure_answer_escalates_and_the_cloud_answers(
    recording: Recording, stream: bool
) -> None:
    sent = len(Echo.raw)
    prompt = "Explain quantum entanglement to a ten-year-old."
    text, ext = ask(
        recording.plain,
        prompt,
        "any",
        stream=stream,
        model="auto",
        policy={"cascade_confidence": 0.99},
    )
    assert ext["plan"] == "chat@cloud/cloud-gpt"
    assert text == prompt  # the recording remote echoes: this is the cloud's answer
    assert ext["cascade"]["escalated"] is True and ext["cascade"]["confidence"] < 0.99
    assert len(Echo.raw) == sent + 1
    first = fetch_record(recording, PLAIN_KEY, ext["cascade"]["first_request"])
    assert first["plan"] == "chat@device/smollm2" and first["status"] == "ok"
    assert int(str(first["tokens_out"])) > 0  # the local try is on the ledger too


def test_with_the_cloud_link_down_the_local_answer_stands_flagged_offline(
    recording: Recording,
) -> None:
    recording.link.down()
    try:
        text, ext = ask(
            recording.plain,
            "Name a colour.",
            "any",
            model="auto",
            policy={"cascade_confidence": 0.99, "max_latency_ms": 20000},
        )
    finally:
        recording.link.up()
    assert ext["plan"] == "chat@device/smollm2" and text
    assert "escalation_failed" in ext["cascade"]
    assert ext["offline"] is True
    assert ext["measured"]["latency_ms"] < 20000
    wait_until_the_cloud_is_reachable(recording.plain)
    assert_ledger_balances(recording.ledger_url)
