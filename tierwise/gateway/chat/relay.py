"""A node's chat stream relayed to the client as OpenAI SSE, and recorded at its end.

The stream was opened by the attempt that succeeded (its first token already in hand).
The record is written when the last token is in, before the final usage chunk goes out,
so the usage chunk can carry the request's ``tierwise`` fields (the headers went out
with the first chunk, before the cost was known). A stream that breaks off upstream is
recorded as ``error``, and one whose client leaves as ``cancelled``; both are charged
for what they generated, and their budget holds released.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from tierwise.errors import UpstreamError
from tierwise.gateway.chat.answering import Streamed
from tierwise.gateway.chat.semantic_cache import CachedAnswer
from tierwise.gateway.chat.teach import measured_answer
from tierwise.gateway.executor import Executed
from tierwise.gateway.pipeline import Shared
from tierwise.gateway.recorder import Pending
from tierwise.models.base import ChatChunk
from tierwise.placement.costing import Measured, plan_cost
from tierwise.privacy.pii import Redactor
from tierwise.runtime import openai_schema as oa

Opened = tuple[AsyncIterator[ChatChunk], ChatChunk]


@dataclass(frozen=True)
class RelayJob:
    """One stream to relay: the request's record, the attempt that opened it, how the
    client asked (usage chunk or not), and the prompt's length in the plan's tokens."""

    pending: Pending
    executed: Executed[Opened]
    wants_usage: bool
    redactor: Redactor | None
    prompt_tokens: int = 0


@dataclass
class _Progress:
    """How far a stream got: what a record written before its end must charge."""

    started: float  # when the attempt that opened it began (perf_counter)
    chunks: int = 0  # pieces of text received from the node
    recorded: bool = False  # set before the record is written, so it is written once


def relayed(shared: Shared, job: RelayJob) -> Streamed:
    headers = {"X-Tierwise-Request-Id": job.pending.id, "X-Tierwise-Plan": job.executed.plan.id}
    progress = _Progress(time.perf_counter() - (job.executed.measured.latency_s or 0.0))

    async def events() -> AsyncIterator[bytes]:
        async for event in _relay(shared, job, streamed, progress):
            yield event

    async def ended() -> None:
        await _cut_short(shared, job, progress, "cancelled", "the client disconnected")

    streamed = Streamed(events(), headers, ended=ended)
    return streamed


@dataclass(frozen=True)
class _Chunks:
    """The OpenAI chunks of one completion: one id, one creation time, one model."""

    cid: str
    created: int
    model: str

    def delta(self, delta: dict[str, str], finish: str | None = None) -> bytes:
        return oa.sse(oa.chunk_json(self.cid, self.model, delta, finish, self.created))


async def _relay(
    shared: Shared, job: RelayJob, streamed: Streamed, progress: _Progress
) -> AsyncIterator[bytes]:
    executed = job.executed
    stream, chunk = executed.result
    out = _Chunks(oa.new_completion_id(), int(time.time()), executed.plan.model)
    restorer = job.redactor.streaming() if job.redactor else None
    text: list[str] = []
    yield out.delta({"role": "assistant", "content": ""})
    try:
        while chunk.usage is None:
            progress.chunks += 1 if chunk.text else 0
            piece = restorer.feed(chunk.text) if restorer else chunk.text
            text.append(piece)
            if piece:
                yield out.delta({"content": piece})
            chunk = await anext(stream)
        if restorer and (rest := restorer.flush()):
            text.append(rest)
            yield out.delta({"content": rest})
    except (UpstreamError, StopAsyncIteration) as exc:
        await _cut_short(shared, job, progress, "error", f"the stream broke off: {exc}")
        yield oa.sse(
            {"error": {"message": "the upstream stream broke off", "type": "server_error"}}
        )
        yield oa.SSE_DONE
        return
    progress.recorded = True
    seconds = time.perf_counter() - progress.started
    ext = await _record(shared, job, streamed, chunk, "".join(text), seconds)
    yield out.delta({}, chunk.finish_reason)
    if job.wants_usage:
        assert chunk.usage is not None
        yield oa.sse(oa.usage_chunk_json(out.cid, out.model, chunk.usage, out.created, ext))
    yield oa.SSE_DONE


async def _cut_short(
    shared: Shared, job: RelayJob, progress: _Progress, status: str, why: str
) -> None:
    """Record a stream that ended before its last chunk, charged for what it generated,
    and stop the node generating more. Once per stream (``progress.recorded``).

    The node reports usage only with its last chunk, which never came. What the record
    assumes instead: one text chunk is one token (llama.cpp nodes stream a token per
    event; a remote that sends several per chunk is charged too few); the prompt is the
    one the planner counted; the node computed the whole time since the attempt began;
    bytes on the link are not counted."""
    if progress.recorded:
        return
    progress.recorded = True
    with anyio.CancelScope(shield=True):  # a client leaving must not cut the record short
        await _record_cut(shared, job, progress, status, why)


async def _record_cut(
    shared: Shared, job: RelayJob, progress: _Progress, status: str, why: str
) -> None:
    executed, plan = job.executed, job.executed.plan
    with contextlib.suppress(Exception):  # the node may be gone: its stream is over anyway
        await executed.result[0].aclose()  # type: ignore[attr-defined]
    seconds = time.perf_counter() - progress.started
    executed.measured = Measured(
        latency_s=seconds,
        tail_compute_s=seconds,
        tokens_in=job.prompt_tokens,
        tokens_out=progress.chunks,
    )
    executed.usd, executed.joules = plan_cost(shared.spec, plan, executed.measured)
    error = f"{why} after {progress.chunks} chunks"
    await shared.recorder.served(job.pending, executed, {}, status, error)


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
