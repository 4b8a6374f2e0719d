"""A Flower strategy wrapper: decode and check every client update, and account for links.

``CompressedUpdates(inner)`` sits outside any Flower strategy (FedAvg, FedProx, the DP
wrappers). Before the inner strategy sees a round's replies it:
- turns each compressed update back into a full model (global + decoded difference);
- rejects, logs and excludes any update that does not decode, has the wrong keys,
  shapes or dtype, or holds NaN (one bad client must not poison the global model);
- keeps the global model unchanged when fewer than ``min_clients`` usable updates came
  back before the round's timeout;
- records the exact bytes each client moved and the round's straggler-rule duration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from tierwise.federated.client_mods import (
    ARRAYS,
    METRICS,
    UPDATE_KEY,
    record_weights,
    weights_record,
)
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.link_accounting import ClientLeg, RoundRecord, message_bytes, settle_round
from tierwise.federated.update_codec import UpdateRejected, decode_update

log = logging.getLogger("tierwise.federated")


class CompressedUpdates(Strategy):
    def __init__(
        self,
        inner: Strategy,
        settings: FLSettings,
        on_round: Callable[[RoundRecord], None] = lambda _: None,
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.on_round = on_round
        self.rounds: list[RoundRecord] = []
        self._global: dict[str, np.ndarray] = {}
        self._sent: dict[int, int] = {}  # node id -> downlink bytes this round
        self._partitions: dict[int, int] = {}  # node id -> partition id, once known

    # -- training -------------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._global = record_weights(arrays)
        self._sent = {m.metadata.dst_node_id: message_bytes(m) for m in messages}
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        usable: list[Message] = []
        legs: dict[int, ClientLeg] = {}
        for reply in replies:
            node = reply.metadata.src_node_id
            leg = ClientLeg(
                self._partitions.get(node), self._sent.get(node, 0), message_bytes(reply)
            )
            legs[node] = leg
            if reply.has_error():
                leg.outcome = f"failed: {_last_line(reply.error.reason)}"
                continue
            try:
                leg.partition, leg.compute_s = self._read_metrics(reply)
                self._partitions[node] = leg.partition
                reply.content[ARRAYS] = weights_record(self._full_model(reply))
            except UpdateRejected as exc:
                leg.outcome = f"rejected: {exc}"
                log.warning("round %d: rejected node %d's update: %s", server_round, node, exc)
                continue
            usable.append(reply)
        for node, nbytes in self._sent.items():
            legs.setdefault(node, ClientLeg(self._partitions.get(node), nbytes, outcome="no reply"))
        record = settle_round(
            server_round,
            list(legs.values()),
            {p: self.settings.link_rates(p) for p in range(self.settings.clients)},
            (self.settings.uplink, self.settings.downlink),
            self.settings.round_timeout,
        )
        self.rounds.append(record)
        if len(usable) < self.settings.min_clients:
            record.problems.append(
                f"{len(usable)} usable updates, fewer than min_clients "
                f"{self.settings.min_clients}: the global model was kept"
            )
            log.warning("round %d: %s", server_round, record.problems[-1])
            return None, None
        return self.inner.aggregate_train(server_round, usable)

    def _read_metrics(self, reply: Message) -> tuple[int, float]:
        metrics = reply.content.metric_records.get(METRICS)
        try:
            assert metrics is not None
            partition = int(metrics["partition-id"])  # type: ignore[arg-type]
            seconds = float(metrics["train-seconds"])  # type: ignore[arg-type]
            examples = int(metrics["num-examples"])  # type: ignore[arg-type]
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise UpdateRejected(f"reply lacks its metrics ({exc!r})") from None
        if not 0 <= partition < self.settings.clients or examples <= 0 or seconds < 0:
            raise UpdateRejected(
                f"reply metrics out of range (partition {partition}, examples {examples})"
            )
        return partition, seconds

    def _full_model(self, reply: Message) -> dict[str, np.ndarray]:
        """The client's model: decoded from its compressed update, or checked as sent."""
        record = reply.content.array_records.get(ARRAYS)
        if record is None:
            raise UpdateRejected("reply has no arrays")
        shapes = [tuple(v.shape) for v in self._global.values()]
        if not self.settings.compression.is_none:
            if list(record.keys()) != [UPDATE_KEY] or record[UPDATE_KEY].dtype != "uint8":
                got = ", ".join(f"{k} ({v.dtype})" for k, v in list(record.items())[:3])
                raise UpdateRejected(f"expected one uint8 {UPDATE_KEY!r} array, got {got}")
            payload = record[UPDATE_KEY].numpy().tobytes()
            delta = decode_update(payload, shapes)
            return {k: g + d for (k, g), d in zip(self._global.items(), delta, strict=True)}
        if list(record.keys()) != list(self._global):
            raise UpdateRejected(f"update has keys {list(record)[:4]}…, not the model's")
        model = {}
        for key, expected in self._global.items():
            array = record[key]
            if tuple(array.shape) != expected.shape or array.dtype != str(expected.dtype):
                raise UpdateRejected(
                    f"{key}: got {array.dtype}{list(array.shape)}, "
                    f"expected {expected.dtype}{list(expected.shape)}"
                )
            model[key] = array.numpy()
            if not np.all(np.isfinite(model[key])):
                raise UpdateRejected(f"{key} holds NaN or infinite values")
        return model

    # -- evaluation and the rest: the inner strategy's --------------------------------

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log.info("update compression %s around:", self.settings.compress)
        self.inner.summary()


def _last_line(reason: str | None) -> str:
    """The exception line of a remote traceback (the useful part), shortened."""
    lines = [line.strip() for line in (reason or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "no reason given")[:200]
