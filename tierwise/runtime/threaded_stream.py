"""Run a blocking generator in a worker thread and consume it from asyncio.

Used for streamed chat answers: the model's token loop stays blocking and simple,
the server stays responsive. If the consumer stops early (the client went away), the
producer is told to stop at its next item and the generator is closed, which
releases the model's lock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class ThreadedStream(Generic[T]):
    def __init__(self, source: Iterator[T]) -> None:
        self._source = source
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.run_in_executor(None, self._produce)

    def _produce(self) -> None:
        put = self._queue.put_nowait
        try:
            for item in self._source:
                if self._stop.is_set():
                    break
                self._loop.call_soon_threadsafe(put, item)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._loop.call_soon_threadsafe(put, exc)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            self._loop.call_soon_threadsafe(put, _END)

    async def next(self) -> T | None:
        """The next item, or None at the end. Re-raises the producer's exception."""
        item = await self._queue.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self.next()) is not None:
            yield item

    async def aclose(self) -> None:
        self._stop.set()
        await asyncio.shield(self._task)
