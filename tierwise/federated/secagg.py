"""``--secagg``: FedAvg through Flower's SecAgg+ workflow, so the server only ever sees
the sum of the clients' models, never one client's.

Flower 1.41 runs SecAgg+ on its compatibility path (a ``LegacyContext``, the legacy
FedAvg, ``DefaultWorkflow`` with ``SecAggPlusWorkflow``, and ``secaggplus_mod`` around a
``NumPyClient``), so this mode has its own ServerApp and ClientApp. Masked sums need
dense vectors, so update compression and DP are refused with it (see fl_config).

Bytes are still exact: ``CountingGrid`` measures every message of every protocol stage
per node. Link time follows the straggler rule with the slowest client's compute; the
per-partition (straggler) rates are not applied, because the protocol hides which node
holds which partition from the server's aggregation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from tierwise.federated.client_app import inputs_for, train_share
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.fl_model import (
    build_model,
    evaluate,
    get_weights,
    set_weights,
)
from tierwise.federated.link_accounting import ClientLeg, RoundRecord, message_bytes, settle_round
from tierwise.federated.partition import partition_indices
from tierwise.federated.run_report import build_report, write_report


class CountingGrid(Grid):
    """A Grid that passes everything through and counts each node's bytes both ways."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner
        self.down: dict[int, int] = {}
        self.up: dict[int, int] = {}

    def take(self) -> tuple[dict[int, int], dict[int, int]]:
        """Bytes since the last call, per node: (down, up)."""
        down, up = self.down, self.up
        self.down, self.up = {}, {}
        return down, up

    def set_run(self, run: Any) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Any:
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self) -> Iterable[Any]:
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        for m in messages:
            node = m.metadata.dst_node_id
            self.down[node] = self.down.get(node, 0) + message_bytes(m)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        self._count_up(replies)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        for m in messages:
            node = m.metadata.dst_node_id
            self.down[node] = self.down.get(node, 0) + message_bytes(m)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        self._count_up(replies)
        return replies

    def _count_up(self, replies: list[Message]) -> None:
        for r in replies:
            node = r.metadata.src_node_id
            self.up[node] = self.up.get(node, 0) + message_bytes(r)


def run_secagg_server(
    grid: Grid, context: Context, settings: FLSettings, on_round: Any
) -> dict[str, Any]:
    data = inputs_for(settings)
    torch.manual_seed(settings.seed)
    model = build_model(settings.model, len(data.classes))
    keys = list(get_weights(model))
    counting = CountingGrid(grid)
    rounds: list[RoundRecord] = []
    initial: dict[str, float] = {}
    round_compute: list[float] = [0.0]

    def fit_metrics(results: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        round_compute[0] = max((float(m.get("train-seconds", 0.0)) for _, m in results), default=0)
        return {"clients": len(results)}

    def central_evaluation(
        server_round: int, arrays: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, dict[str, Any]]:
        set_weights(model, dict(zip(keys, arrays, strict=True)))
        accuracy, loss = evaluate(model, data.x_test, data.y_test)
        if server_round == 0:
            initial.update(accuracy=accuracy)
        else:
            down, up = counting.take()
            legs = [ClientLeg(None, down.get(n, 0), up.get(n, 0), round_compute[0])
                    for n in sorted(set(down) | set(up))]  # fmt: skip
            record = settle_round(
                server_round, legs, {}, (settings.uplink, settings.downlink), settings.round_timeout
            )
            record.accuracy, record.loss = accuracy, loss
            rounds.append(record)
            on_round(record)
        return loss, {"accuracy": accuracy}

    strategy = LegacyFedAvg(
        fraction_fit=settings.fraction,
        fraction_evaluate=0.0,
        min_fit_clients=min(settings.min_clients, settings.clients),
        min_available_clients=settings.clients,
        evaluate_fn=central_evaluation,
        on_fit_config_fn=lambda r: {**settings.to_record(), "server-round": r},
        fit_metrics_aggregation_fn=fit_metrics,
        initial_parameters=ndarrays_to_parameters(list(get_weights(model).values())),
    )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=settings.rounds, round_timeout=settings.round_timeout),
        strategy=strategy,
    )
    workflow = _secagg_workflow(settings, data.y_train)
    started = time.perf_counter()
    workflow(counting, legacy)
    final = get_weights(model)  # the last evaluation loaded the final global model
    report = build_report(settings, rounds, initial, time.perf_counter() - started, final)
    report["secure_aggregation"] = "SecAgg+ (Flower)"
    if settings.report:
        write_report(settings.report, report, final)
    return report


def _secagg_workflow(settings: FLSettings, labels: np.ndarray) -> DefaultWorkflow:
    """Flower's SecAgg+ over every client; updates are weighted by partition size, so the
    largest partition bounds the weights the masks must cover."""
    parts = partition_indices(labels, settings.clients, settings.partition_spec, settings.seed)
    return DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=settings.clients,
            reconstruction_threshold=max(2, (2 * settings.clients) // 3),
            max_weight=float(max(len(p) for p in parts)),
            timeout=settings.round_timeout,
        )
    )


class _SecAggClient(NumPyClient):
    def __init__(self, partition: int) -> None:
        self.partition = partition

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        settings = FLSettings.from_record(config)
        trained = train_share(
            settings,
            self.partition,
            parameters,
            round_=int(config.get("server-round", 0)),
        )
        metrics = {"train-seconds": trained.seconds, "partition-id": self.partition}
        return list(trained.weights.values()), trained.examples, metrics


def _client_fn(context: Context) -> Any:
    return _SecAggClient(int(context.node_config["partition-id"])).to_client()


client_app = ClientApp(client_fn=_client_fn, mods=[secaggplus_mod])
