"""Measured profiles the planner predicts from: a small keyed store of numbers.

Keys are ``(node, model, metric)``; ``node`` is ``"*"`` for what does not depend on
the node (a codec's size and accuracy at a split point). Metric names:

    stage:{i}:ms                  compute time of stage i on the node, batch 1 (p50)
    codec:{c}@{k}:bytes           wire bytes of codec c at split k (k = 0: the input)
    codec:{c}@{k}:agreement       top-1 agreement with the unsplit fp32 model, on the
                                  inputs where fp32 is decisive (see ``DECISIVE_MARGIN``)
    codec:{c}@{k}:accuracy        top-1 accuracy on labelled photos of the model (or
                                  variant) run with codec c at split k
    codec:{c}@{k}:ms              encode + decode time
    out:bytes                     wire bytes of the model's output (logits); for a model
                                  called whole, of one item's answer (headers excluded)
    model:agreement               a variant's top-1 agreement with its base model
    model:accuracy                top-1 accuracy on labelled data of the model (or
                                  variant) run whole, with nothing crossing a link
    call:ms                       a model called whole: compute time per item on the node
    llm:prefill_tok_s             prompt tokens per second
    llm:decode_tok_s              generated tokens per second
    llm:overhead_ms               fixed time per request
    llm:completion_tokens         mean answer length

Profiles come from ``tierwise profile`` and are refined online from every request
(exponentially weighted). ``version`` changes whenever a number does, so cached plan
tables know when to rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable

Key = tuple[str, str, str]
ANY_NODE = "*"
ONLINE_WEIGHT = 0.2
OUT_BYTES = "out:bytes"
CALL_MS = "call:ms"
MODEL_ACCURACY = "model:accuracy"
MODEL_AGREEMENT = "model:agreement"
#: fp32 is *decisive* on an input when its top softmax probability leads the second by
#: at least this much; agreement is counted on those inputs only, because answers that
#: flip where fp32 itself is torn (int8 rounding flips those, see docs/ARCHITECTURE.md)
#: say little about a plan's quality.
DECISIVE_MARGIN = 0.1


def stage_metric(stage: int) -> str:
    return f"stage:{stage}:ms"


def codec_metric(codec: str, split: int, what: str) -> str:
    return f"codec:{codec}@{split}:{what}"


def accuracy_metric(codec: str | None, split: int) -> str:
    """The metric holding a plan's measured accuracy: its codec's at its split, or the
    model's own when nothing crosses a link or the uploaded bytes cross it unchanged
    (``original``: the far node decodes the very bytes the client would)."""
    if codec is None or codec == "original":
        return MODEL_ACCURACY
    return codec_metric(codec, split, "accuracy")


def pair_accuracy_metric(codec: str, split: int, codec2: str, split2: int) -> str:
    """A three-tier plan's accuracy: ``codec`` at ``split``, then ``codec2`` at ``split2``."""
    return f"codec:{codec}@{split}+{codec2}@{split2}:accuracy"


class Profiles:
    def __init__(self) -> None:
        self._values: dict[Key, float] = {}
        self._samples: dict[Key, int] = {}
        self.version = 0

    def __len__(self) -> int:
        return len(self._values)

    def get(self, node: str, model: str, metric: str) -> float | None:
        return self._values.get((node, model, metric))

    def has(self, node: str, model: str, metric: str) -> bool:
        return (node, model, metric) in self._values

    def set(self, node: str, model: str, metric: str, value: float, samples: int = 1) -> None:
        self._values[(node, model, metric)] = float(value)
        self._samples[(node, model, metric)] = samples
        self.version += 1

    def observe(self, node: str, model: str, metric: str, value: float) -> None:
        """Fold in one live measurement (the first one is taken as is)."""
        key = (node, model, metric)
        old = self._values.get(key)
        new = value if old is None else (1 - ONLINE_WEIGHT) * old + ONLINE_WEIGHT * value
        self._values[key] = new
        self._samples[key] = self._samples.get(key, 0) + 1
        self.version += 1

    def samples(self, node: str, model: str, metric: str) -> int:
        """How many measurements stand behind a value (0 if there is none)."""
        return self._samples.get((node, model, metric), 0)

    def stage_ms(self, node: str, model: str, start: int, end: int) -> float | None:
        """Summed compute time of stages [start, end) on ``node``; None if unmeasured."""
        total = 0.0
        for stage in range(start, end):
            value = self._values.get((node, model, stage_metric(stage)))
            if value is None:
                return None
            total += value
        return total

    def observe_stages(
        self, node: str, model: str, start: int, end: int, measured_ms: float
    ) -> None:
        """Spread a measured time over stages [start, end) in proportion to their profile."""
        predicted = self.stage_ms(node, model, start, end)
        if predicted is None or predicted <= 0 or measured_ms <= 0:
            return
        ratio = measured_ms / predicted
        for stage in range(start, end):
            key = (node, model, stage_metric(stage))
            self.observe(node, model, key[2], self._values[key] * ratio)

    def rows(self) -> list[tuple[str, str, str, float, int]]:
        return [(*key, value, self._samples.get(key, 1)) for key, value in self._values.items()]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, float, int]]) -> Profiles:
        profiles = cls()
        for node, model, metric, value, samples in rows:
            profiles.set(node, model, metric, value, samples)
        return profiles
