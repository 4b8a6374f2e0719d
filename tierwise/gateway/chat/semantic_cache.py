"""A semantic cache of chat answers, one per API key, opt-in.

Two prompts share an answer only when everything but the wording of the last message is
identical (model, sampling parameters, policy, every earlier turn) and the last messages
are the same or close in meaning. "Close" is MiniLM cosine similarity, which is known to
be fooled in three ways, each guarded here:

- opposite meanings score high ("is X safe" / "is X unsafe"): the polarity words and
  negated forms of the two messages must match;
- different numbers or names score high ("flights to Paris" / "flights to Rome"): the
  numbers, capitalised names and quoted strings must be the same;
- a follow-up ("and in French?") looks like other follow-ups: earlier turns are part of
  the exact key, so a follow-up only ever matches the same conversation.

Entries expire after ``ttl`` and the oldest go first past ``max_entries``. Nothing is
shared across API keys.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierwise.config import CacheSpec

_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "without",
        "cannot",
        "can't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "wouldn't",
        "shouldn't",
        "couldn't",
        "hasn't",
        "haven't",
        "least",
        "worst",
        "fewer",
        "less",
        "against",
        "except",
    ]
)
_NEGATED_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "anti")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+|\"[^\"]+\"|'[^']+'")
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: str
    model: str
    request_id: str
    cloud_usd: float
    usd: float


@dataclass
class _Entry:
    context: str
    last: str
    vector: np.ndarray
    answer: CachedAnswer
    stored_at: float


@dataclass(frozen=True)
class Hit:
    answer: CachedAnswer
    kind: str  # "exact" or "semantic"
    similarity: float


def request_keys(
    model: str, messages: list[dict[str, str]], params: dict[str, Any], policy: dict[str, Any]
) -> tuple[str, str]:
    """(exact key, context key): the second leaves out the last message's words."""
    context = {
        "model": model,
        "params": params,
        "policy": policy,
        "turns": messages[:-1],
        "last_role": messages[-1]["role"],
    }
    ctx = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()
    exact = hashlib.sha256((ctx + "\0" + messages[-1]["content"]).encode()).hexdigest()
    return exact, ctx


def _polarity(text: str) -> frozenset[str]:
    words = _WORD.findall(text.lower())
    marks = {w for w in words if w in _NEGATIONS or w.endswith("n't")}
    return frozenset(marks)


def _stems(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _negated_pair(a: str, b: str) -> bool:
    """Whether one message has a word the other has with a negating prefix (safe/unsafe)."""
    sa, sb = _stems(a), _stems(b)
    for x, y in ((sa - sb, sb - sa), (sb - sa, sa - sb)):
        for w in x:
            if any(w.startswith(p) and w[len(p) :] in y for p in _NEGATED_PREFIXES):
                return True
    return False


def same_facts(a: str, b: str) -> bool:
    """The guards: numbers, names and polarity must agree for a semantic hit."""
    if sorted(_NUMBER.findall(a)) != sorted(_NUMBER.findall(b)):
        return False
    if set(_NAME.findall(a.strip())) != set(_NAME.findall(b.strip())):
        return False
    return _polarity(a) == _polarity(b) and not _negated_pair(a, b)


@dataclass
class SemanticCache:
    encode: Callable[[list[str]], np.ndarray]
    clock: Callable[[], float] = time.monotonic
    _stores: dict[str, OrderedDict[str, _Entry]] = field(default_factory=dict)

    def lookup(
        self, api_key: str, spec: CacheSpec, exact: str, context: str, last: str
    ) -> Hit | None:
        store = self._live(api_key, spec)
        if exact in store:
            store.move_to_end(exact)
            return Hit(store[exact].answer, "exact", 1.0)
        candidates = [e for e in store.values() if e.context == context]
        if not candidates:
            return None
        vector = self.encode([last])[0]
        sims = np.array([float(vector @ e.vector) for e in candidates])
        for i in np.argsort(-sims):
            if sims[i] < spec.similarity:
                break
            if same_facts(last, candidates[i].last):
                return Hit(candidates[i].answer, "semantic", float(sims[i]))
        return None

    def store(
        self,
        api_key: str,
        spec: CacheSpec,
        exact: str,
        context: str,
        last: str,
        answer: CachedAnswer,
    ) -> None:
        store = self._live(api_key, spec)
        store[exact] = _Entry(context, last, self.encode([last])[0], answer, self.clock())
        store.move_to_end(exact)
        while len(store) > spec.max_entries:
            store.popitem(last=False)

    def _live(self, api_key: str, spec: CacheSpec) -> OrderedDict[str, _Entry]:
        store = self._stores.setdefault(api_key, OrderedDict())
        cutoff = self.clock() - spec.ttl
        for key in [k for k, e in store.items() if e.stored_at < cutoff]:
            del store[key]
        return store

    def size(self, api_key: str) -> int:
        return len(self._stores.get(api_key, {}))
