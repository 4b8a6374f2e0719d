"""EMULATED slow hardware: wrappers that stretch a model's compute time.

A node with ``emulate.speed_factor: 0.25`` runs each model through these wrappers,
so every compute step takes about four times as long as it does on this machine. The
sleeping happens while the wrapper's lock is held, as a busy slow board would be busy.
"""

from __future__ import annotations

import collections
import queue
import statistics
import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any, Generic

import numpy as np
from PIL import Image

from tierwise.models.base import ChatChunk, ChatMessage, ChatModel, ChatParams, StagedModel
from tierwise.models.whole import In, Out, WholeModel


class SlowedChatModel(ChatModel):
    """Streams tokens at ``speed_factor`` times the real pace.

    The real model generates flat out in a helper thread; this generator releases each
    chunk when a slow board would have produced it (its real finish time divided by the
    speed factor). Sleeping between tokens inside llama.cpp's own loop was measured to
    slow the real compute itself by about 2x, which would over-state the slow-down.
    """

    def __init__(self, inner: ChatModel, speed_factor: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_tokens_default = inner.max_tokens_default
        self.speed_factor = speed_factor
        self._busy = threading.Lock()  # a slow board is busy until its last token is out

    def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        with self._busy:
            produced: queue.Queue[tuple[float, ChatChunk | BaseException] | None] = queue.Queue()
            stop = threading.Event()
            began = time.perf_counter()

            def generate() -> None:
                try:
                    for chunk in self.inner.stream(messages, params):
                        produced.put((time.perf_counter() - began, chunk))
                        if stop.is_set():
                            break
                except BaseException as exc:  # handed to the consumer below
                    produced.put((0.0, exc))
                finally:
                    produced.put(None)

            worker = threading.Thread(target=generate, name=f"{self.name}-slowed", daemon=True)
            worker.start()
            try:
                while (item := produced.get()) is not None:
                    done, chunk = item
                    if isinstance(chunk, BaseException):
                        raise chunk
                    delay = began + done / self.speed_factor - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    yield chunk
            finally:
                stop.set()
                worker.join()

    def close(self) -> None:
        self.inner.close()


class SlowedStagedModel(StagedModel):
    """Each call takes 1/speed_factor times the *typical* time of the same stages here.

    Stretching each call's own time would multiply this machine's jitter (a cold thread
    pool can add 50%) by 1/speed_factor too; a board that is slow is slow steadily. So the
    target is the median of the last few real times of the same stage range.
    """

    HISTORY = 9

    def __init__(self, inner: StagedModel, speed_factor: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.stages = inner.stages
        self.speed_factor = speed_factor
        self._busy = threading.Lock()
        self._recent: dict[tuple[int, int], collections.deque[float]] = {}

    def run_stages(self, x: np.ndarray, start: int, end: int) -> np.ndarray:
        with self._busy:
            began = time.perf_counter()
            out = self.inner.run_stages(x, start, end)
            elapsed = time.perf_counter() - began
            recent = self._recent.setdefault((start, end), collections.deque(maxlen=self.HISTORY))
            recent.append(elapsed)
            target = statistics.median(recent) / self.speed_factor
            if target > elapsed:
                time.sleep(target - elapsed)
            return out

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.inner.preprocess(image)

    def labels(self) -> list[str]:
        return self.inner.labels()

    def close(self) -> None:
        self.inner.close()


class SlowedWholeModel(WholeModel[In, Out], Generic[In, Out]):
    """Each call takes 1/speed_factor times the typical time of calls of its size here,
    for the reason :class:`SlowedStagedModel` gives (a slow board is slow steadily)."""

    HISTORY = 9

    def __init__(self, inner: WholeModel[In, Out], speed_factor: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.speed_factor = speed_factor
        self._busy = threading.Lock()
        self._recent: dict[Hashable, collections.deque[float]] = {}

    def run(self, x: In) -> Out:
        with self._busy:
            began = time.perf_counter()
            out = self.inner.run(x)
            elapsed = time.perf_counter() - began
            key = self.inner.size_key(x)
            recent = self._recent.setdefault(key, collections.deque(maxlen=self.HISTORY))
            recent.append(elapsed)
            target = statistics.median(recent) / self.speed_factor
            if target > elapsed:
                time.sleep(target - elapsed)
            return out

    def size_key(self, x: In) -> Hashable:
        return self.inner.size_key(x)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
