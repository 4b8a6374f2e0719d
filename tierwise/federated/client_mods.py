"""Flower client mods: update compression, DP clipping on request, and fault injection.

Mods wrap the ClientApp; the first in the list is the outermost. The order is
``[fault_injection_mod, update_compression_mod, clipping_when_asked_mod]``: the trained
model is first clipped (if the server asked for DP), then turned into a compressed
update, and only a test's injected fault can tamper with what finally leaves.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable

from tierwise.federated.fl_config import FLSettings
from tierwise.federated.update_codec import encode_update

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"
UPDATE_KEY = "tierwise-update"  # the single Array of a compressed reply
_RESIDUAL = "tierwise-residual"
_CLIPPING_NORM = "clipping_norm"  # the key Flower's DP wrappers send


def record_weights(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: array.numpy() for key, array in record.items()}


def weights_record(weights: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({key: Array(np.ascontiguousarray(v)) for key, v in weights.items()})


def _round_of(msg: Message) -> int:
    value = msg.content.config_records[CONFIG].get("server-round", 0)
    return int(value) if isinstance(value, int | float) else 0


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN and CONFIG in msg.content


def update_compression_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Replace the trained model in a train reply by the compressed difference from the
    global model; keep what top-k left out in the node's state for the next round."""
    if not _is_train(msg):
        return call_next(msg, ctxt)
    settings = FLSettings.from_record(msg.content[CONFIG])
    spec = settings.compression
    if spec.is_none:
        return call_next(msg, ctxt)
    sent = record_weights(msg.content.array_records[ARRAYS])
    reply = call_next(msg, ctxt)
    if reply.has_error():
        return reply
    trained = record_weights(reply.content.array_records[ARRAYS])
    delta = [trained[k] - sent[k] for k in sent]
    stored = ctxt.state.array_records.get(_RESIDUAL)
    residual = stored["r"].numpy() if stored is not None else None
    round_ = _round_of(msg)
    partition = int(ctxt.node_config.get("partition-id", 0))
    rng = np.random.default_rng([settings.seed, partition, round_])
    payload, residual = encode_update(delta, spec, residual, rng)
    if residual is not None:
        ctxt.state.array_records[_RESIDUAL] = ArrayRecord({"r": Array(residual)})
    reply.content[ARRAYS] = ArrayRecord({UPDATE_KEY: Array(np.frombuffer(payload, np.uint8))})
    return reply


def clipping_when_asked_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's fixed clipping, applied only when the server's DP wrapper asked for it
    (``fixedclipping_mod`` alone refuses every message without a clipping norm)."""
    if _is_train(msg) and _CLIPPING_NORM in msg.content[CONFIG]:
        return fixedclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def fault_injection_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Misbehave on purpose, as the ``fault`` setting says, so tests can check that the
    server survives: ``hang`` (never answer in time), ``crash``, ``garbage`` (an update
    that is not one) and ``shape`` (an update for a different model)."""
    if not _is_train(msg):
        return call_next(msg, ctxt)
    settings = FLSettings.from_record(msg.content[CONFIG])
    kind = _fault_for(
        settings.fault,
        int(ctxt.node_config.get("partition-id", -1)),
        _round_of(msg),
    )
    if kind == "hang":
        time.sleep(settings.round_timeout + 5.0)
    if kind == "crash":
        raise RuntimeError("injected fault: client crashed mid-round")
    reply = call_next(msg, ctxt)
    if kind == "garbage":
        noise = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)
        sent_keys = list(reply.content.array_records[ARRAYS])
        key = UPDATE_KEY if UPDATE_KEY in sent_keys else sent_keys[0]
        reply.content[ARRAYS] = ArrayRecord({key: Array(noise)})
    if kind == "shape":
        wrong = {k: np.zeros((3, 3), np.float32) for k in reply.content.array_records[ARRAYS]}
        reply.content[ARRAYS] = weights_record(wrong)
    return reply


def _fault_for(spec: str, partition: int, round_: int) -> str | None:
    """The fault ``partition`` injects in ``round_``; spec: ``KIND@PARTITION:ROUND,...``."""
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, where = item.partition("@")
        target, _, at = where.partition(":")
        if int(target) == partition and (not at or int(at) == round_):
            return kind
    return None
