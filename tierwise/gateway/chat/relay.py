"""A node's chat stream relayed to the client as OpenAI SSE, and recorded at its end.

The stream was opened by the attempt that succeeded (its first token already in hand).
The record is written when the last token is in, before the final usage chunk goes out,
so the usage chunk can carry the request's ``tierwise`` fields; a stream that breaks off
is recorded as failed and its budget hold released.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from tierwise.errors import UpstreamError
from tierwise.gateway.chat.answering import Streamed
from tierwise.gateway.chat.semantic_cache import CachedAnswer
from tierwise.gateway.chat.teach import measured_answer
from tierwise.gateway.executor import Executed
from tierwise.gateway.pipeline import Shared
from tierwise.gateway.recorder import Pending
from tierwise.models.base import ChatChunk
from tierwise.placement.costing import plan_cost
from tierwise.privacy.pii import Redactor
from tierwise.runtime import openai_schema as oa

Opened = tuple[AsyncIterator[ChatChunk], ChatChunk]


@dataclass(frozen=True)
class RelayJob:
    """One stream to relay: the request's record, the attempt that opened it, and how
    the client asked (usage chunk or not)."""

    pending: Pending
    executed: Executed[Opened]
    wants_usage: bool
    redactor: Redactor | None


def relayed(shared: Shared, job: RelayJob) -> Streamed:
    headers = {"X-Tierwise-Request-Id": job.pending.id, "X-Tierwise-Plan": job.executed.plan.id}

    async def events() -> AsyncIterator[bytes]:
        async for event in _relay(shared, job, streamed):
            yield event

    streamed = Streamed(events(), headers)
    return streamed


@dataclass(frozen=True)
class _Chunks:
    """The OpenAI chunks of one completion: one id, one creation time, one model."""

    cid: str
    created: int
    model: str

    def delta(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        return oa.sse(oa.chunk_json(self.cid, self.model, delta, finish, self.created))


async def _relay(shared: Shared, job: RelayJob, streamed: Streamed) -> AsyncIterator[bytes]:
    executed = job.executed
    stream, chunk = executed.result
    out = _Chunks(oa.new_completion_id(), int(time.time()), executed.plan.model)
    started = time.perf_counter() - (executed.measured.latency_s or 0.0)
    restorer = job.redactor.streaming() if job.redactor else None
    text: list[str] = []
    yield out.delta({"role": "assistant", "content": ""})
    try:
        while chunk.usage is None:
            piece = restorer.feed(chunk.text) if restorer else chunk.text
            text.append(piece)
            if piece:
                yield out.delta({"content": piece})
            chunk = await anext(stream)
        if restorer and (rest := restorer.flush()):
            text.append(rest)
            yield out.delta({"content": rest})
    except (UpstreamError, StopAsyncIteration) as exc:
        await run_in_threadpool(shared.ledger.settle, executed.reservation, 0.0)
        await shared.recorder.failed(job.pending, UpstreamError(f"the stream broke off: {exc}"))
        yield oa.sse(
            {"error": {"message": "the upstream stream broke off", "type": "server_error"}}
        )
        yield oa.SSE_DONE
        return
    seconds = time.perf_counter() - started
    ext = await _record(shared, job, streamed, chunk, "".join(text), seconds)
    yield out.delta({}, chunk.finish_reason)
    if job.wants_usage:
        assert chunk.usage is not None
        yield oa.sse(oa.usage_chunk_json(out.cid, out.model, chunk.usage, out.created, ext))
    yield oa.SSE_DONE


async def _record(
    shared: Shared, job: RelayJob, streamed: Streamed, last: ChatChunk, text: str, seconds: float
) -> dict[str, Any]:
    """Record the answer the last chunk completed; hand it to whoever wants it whole.
    Returns the request's ``tierwise`` fields for the usage chunk."""
    executed, plan = job.executed, job.executed.plan
    assert last.usage is not None
    meta = last.meta or {}
    transfer = (int(meta.get("bytes_up", 0)), int(meta.get("bytes_down", 0)), seconds)
    executed.measured = measured_answer(shared, plan, last.usage, meta, transfer)
    executed.usd, executed.joules = plan_cost(shared.spec, plan, executed.measured)
    served = await shared.recorder.served(job.pending, executed, {})
    finish = last.finish_reason or "stop"
    await streamed.done(
        CachedAnswer(text, finish, plan.model, job.pending.id, served.cloud_usd, executed.usd)
    )
    ext: dict[str, Any] = served.body["tierwise"]
    return ext
