"""EMULATED slow boards: the wrappers stretch time by 1/speed_factor and stay streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tierwise.models.base import (
    ChatChunk,
    ChatMessage,
    ChatModel,
    ChatParams,
    StagedModel,
    StageInfo,
    Usage,
)
from tierwise.models.emulation import SlowedChatModel, SlowedStagedModel

STEP = 0.02  # seconds of "compute" per token or stage call


class _TimedChat(ChatModel):
    """Takes exactly STEP seconds per token, like a very regular model."""

    name = "timed"

    def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        n = params.max_tokens or 5
        for i in range(n):
            time.sleep(STEP)
            yield ChatChunk(f"t{i} ")
        yield ChatChunk("", finish_reason="length", usage=Usage(3, n))


class _TimedStages(StagedModel):
    def __init__(self) -> None:
        self.name = "timed-stages"
        self.stages = [StageInfo(0, "only", (1,), (1,), 0)]

    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        time.sleep(STEP)
        return x + 1

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.zeros((1, 1), dtype=np.float32)

    def labels(self) -> list[str]:
        return ["one"]


def test_slowed_chat_takes_one_over_speed_factor_as_long_and_still_streams() -> None:
    model = SlowedChatModel(_TimedChat(), speed_factor=0.25)
    started = time.perf_counter()
    arrivals = []
    for chunk in model.stream([ChatMessage("user", "hi")], ChatParams(max_tokens=10)):
        arrivals.append((time.perf_counter() - started, chunk))
    total = arrivals[-1][0]
    assert total == pytest.approx(10 * STEP / 0.25, rel=0.2)
    assert arrivals[0][0] == pytest.approx(
        STEP / 0.25, rel=0.5
    )  # first token early, not at the end
    final = arrivals[-1][1]
    assert final.usage == Usage(3, 10) and final.finish_reason == "length"
    assert "".join(c.text for _, c in arrivals) == "".join(f"t{i} " for i in range(10))


def test_slowed_chat_is_busy_until_its_last_token() -> None:
    model = SlowedChatModel(_TimedChat(), speed_factor=0.5)
    finished: list[float] = []
    started = time.perf_counter()

    def ask() -> None:
        model.complete([ChatMessage("user", "hi")], ChatParams(max_tokens=5))
        finished.append(time.perf_counter() - started)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one = 5 * STEP / 0.5
    assert max(finished) == pytest.approx(2 * one, rel=0.25)  # served one after the other


def test_slowed_chat_passes_errors_through() -> None:
    class Broken(_TimedChat):
        def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
            yield ChatChunk("a")
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        list(SlowedChatModel(Broken(), 0.5).stream([], ChatParams()))


def test_slowed_stages_stretch_compute() -> None:
    model = SlowedStagedModel(_TimedStages(), speed_factor=0.2)
    started = time.perf_counter()
    out = model.run_stages(np.zeros((1, 1), dtype=np.float32), 0, 1)
    assert time.perf_counter() - started == pytest.approx(STEP / 0.2, rel=0.25)
    assert out[0, 0] == 1.0
    assert model.stages == model.inner.stages and model.labels() == ["one"]
