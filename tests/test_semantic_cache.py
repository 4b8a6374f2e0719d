"""The semantic cache: what may share an answer, and the failures it is guarded against."""

from __future__ import annotations

import pytest

from tierwise.config import CacheSpec
from tierwise.gateway.chat.semantic_cache import (
    CachedAnswer,
    SemanticCache,
    request_keys,
    same_facts,
)
from tierwise.routing.features import MiniLMEncoder

SPEC = CacheSpec(enabled=True, ttl=60, max_entries=3, similarity=0.92)
PARAMS = {"temperature": 0.0, "max_tokens": 64}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(encoder: MiniLMEncoder, clock: Clock) -> SemanticCache:
    return SemanticCache(encoder.encode, clock)


def _turns(*contents: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(contents)
    return [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]


def put(
    cache: SemanticCache,
    turns: list[dict[str, str]],
    text: str,
    key: str = "alice",
    params: dict[str, object] | None = None,
) -> None:
    exact, ctx = request_keys("auto", turns, params or PARAMS, {})
    answer = CachedAnswer(text, "stop", "smollm2", "req-1", 0.002, 0.0)
    cache.store(key, SPEC, exact, ctx, turns[-1]["content"], answer)


def get(
    cache: SemanticCache,
    turns: list[dict[str, str]],
    key: str = "alice",
    params: dict[str, object] | None = None,
) -> str | None:
    exact, ctx = request_keys("auto", turns, params or PARAMS, {})
    hit = cache.lookup(key, SPEC, exact, ctx, turns[-1]["content"])
    return None if hit is None else hit.kind


def test_the_same_question_hits_exactly_and_a_paraphrase_semantically(
    cache: SemanticCache,
) -> None:
    put(cache, _turns("How do I reset my password?"), "Click 'Forgot password'.")
    assert get(cache, _turns("How do I reset my password?")) == "exact"
    assert get(cache, _turns("How can I reset my password?")) == "semantic"


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Is ibuprofen safe during pregnancy?", "Is ibuprofen unsafe during pregnancy?"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
        ("Should I take the train?", "Shouldn't I take the train?"),
        ("What is 12 times 7?", "What is 12 times 8?"),
        ("Convert 5 miles to km.", "Convert 50 miles to km."),
        ("Book a flight to Paris on Monday.", "Book a flight to Rome on Monday."),
        ("Summarise the novel 'Emma'.", "Summarise the novel 'Persuasion'."),
    ],
)
def test_look_alike_questions_do_not_share_answers(
    cache: SemanticCache, stored: str, asked: str
) -> None:
    put(cache, _turns(stored), "stored answer")
    assert get(cache, _turns(asked)) is None


def test_guards_directly() -> None:
    assert same_facts("What is the capital of France?", "What's the capital city of France?")
    assert not same_facts("Is it legal?", "Is it illegal?")


def test_a_follow_up_only_matches_the_same_conversation(cache: SemanticCache) -> None:
    paris = _turns(
        "Tell me about Paris.", "Paris is the capital of France.", "What is its population?"
    )
    rome = _turns("Tell me about Rome.", "Rome is the capital of Italy.", "What is its population?")
    put(cache, paris, "About 2.1 million.")
    assert get(cache, rome) is None
    assert get(cache, paris) == "exact"


def test_keys_sampling_and_model_are_part_of_the_key(cache: SemanticCache) -> None:
    q = _turns("Name a prime number.")
    put(cache, q, "7")
    assert get(cache, q, key="bob") is None
    assert get(cache, q, params={"temperature": 0.9, "max_tokens": 64}) is None
    exact, ctx = request_keys("gpt-x", q, PARAMS, {})
    assert cache.lookup("alice", SPEC, exact, ctx, q[-1]["content"]) is None


def test_entries_expire_and_the_oldest_go_first(cache: SemanticCache, clock: Clock) -> None:
    for i, q in enumerate(["Name a colour.", "Name a fruit.", "Name a river.", "Name a tree."]):
        put(cache, _turns(q), str(i))
        clock.now += 1
    assert cache.size("alice") == 3
    assert get(cache, _turns("Name a colour.")) is None  # evicted: max_entries is 3
    assert get(cache, _turns("Name a tree.")) == "exact"
    clock.now += 61
    assert get(cache, _turns("Name a tree.")) is None  # past the TTL
    assert cache.size("alice") == 0
