"""The semantic cache behind the real gateway: hits cost $0, count as savings, stay per key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import recording_cluster as rc
from tests.recording_cluster import Echo, Recording, ask


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    yield from rc.recording_cluster(tmp_path_factory.mktemp("cache"))


def test_a_repeat_and_a_paraphrase_are_served_from_the_cache(recording: Recording) -> None:
    sent = len(Echo.raw)
    first, ext = ask(recording.cached, "How do I reset my password?", "any")
    assert ext["plan"] == "chat@cloud/cloud-gpt" and len(Echo.raw) == sent + 1
    again, ext = ask(recording.cached, "How do I reset my password?", "any")
    assert (again, ext["plan"], ext["cache"]["hit"]) == (first, "cache", "exact")
    assert ext["measured"]["usd_modelled"] == 0.0
    para, ext = ask(recording.cached, "How can I reset my password?", "any")
    assert (para, ext["cache"]["hit"]) == (first, "semantic")
    assert ext["cache"]["similarity"] >= 0.92
    assert len(Echo.raw) == sent + 1, "hits must not reach the model"
    record = rc.fetch_record(recording, rc.CACHED_KEY, ext["request_id"])
    assert record["plan"] == "cache" and record["usd_modelled"] == 0.0
    assert float(record["cloud_usd_modelled"]) > 0.0  # what it would have cost: counted as saved


def test_a_different_number_or_polarity_is_a_miss(recording: Recording) -> None:
    ask(recording.cached, "Is it safe to charge a phone overnight?", "any")
    sent = len(Echo.raw)
    _, ext = ask(recording.cached, "Is it unsafe to charge a phone overnight?", "any")
    assert ext["plan"] != "cache" and len(Echo.raw) == sent + 1
    ask(recording.cached, "Convert 5 miles to kilometres.", "any")
    _, ext = ask(recording.cached, "Convert 50 miles to kilometres.", "any")
    assert ext["plan"] != "cache"


def test_the_cache_is_per_key_and_off_by_default(recording: Recording) -> None:
    ask(recording.cached, "Name the largest planet.", "any")
    sent = len(Echo.raw)
    _, ext = ask(recording.plain, "Name the largest planet.", "any")
    assert ext["plan"] == "chat@cloud/cloud-gpt" and "cache" not in ext
    assert len(Echo.raw) == sent + 1
    assert rc.PLAIN_KEY != rc.CACHED_KEY


def test_a_streamed_request_is_answered_from_the_cache_too(recording: Recording) -> None:
    first, _ = ask(recording.cached, "List three primary colours.", "any", stream=True)
    sent = len(Echo.raw)
    again, ext = ask(recording.cached, "List three primary colours.", "any", stream=True)
    assert again == first and ext["plan"] == "cache" and len(Echo.raw) == sent
    plain, ext = ask(recording.cached, "List three primary colours.", "any")
    assert plain == first and ext["plan"] == "cache"  # streamed answers are kept whole
