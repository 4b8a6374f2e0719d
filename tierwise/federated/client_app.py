"""The Flower ClientApp: train on this node's share of the data, report how long it took.

The node's share comes from its ``partition-id`` (node config) and the run's settings
(inside every training message), so simulation and a real SuperNode run the same code.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from tierwise.federated.client_mods import (
    ARRAYS,
    CONFIG,
    METRICS,
    clipping_when_asked_mod,
    fault_injection_mod,
    record_weights,
    update_compression_mod,
    weights_record,
)
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.fl_data import FLData, load_images, model_inputs
from tierwise.federated.fl_model import TrainSettings, build_model, set_weights, train_local
from tierwise.federated.partition import partition_indices

app = ClientApp(mods=[fault_injection_mod, update_compression_mod, clipping_when_asked_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings = FLSettings.from_record(msg.content[CONFIG])
    partition = int(context.node_config["partition-id"])
    config = msg.content.config_records[CONFIG]
    trained = train_share(
        settings,
        partition,
        record_weights(msg.content.array_records[ARRAYS]),
        round_=int(config.get("server-round", 0)),  # type: ignore[arg-type]
        proximal_mu=float(config.get("proximal-mu", 0.0)),  # type: ignore[arg-type]
    )
    metrics = MetricRecord(
        {
            "num-examples": trained.examples,
            "train-loss": trained.loss,
            "train-seconds": trained.seconds,
            "partition-id": partition,
        }
    )
    content = RecordDict({ARRAYS: weights_record(trained.weights), METRICS: metrics})
    return Message(content=content, reply_to=msg)


@dataclass
class TrainedShare:
    """What one round of local training produced."""

    weights: dict[str, np.ndarray]
    examples: int
    loss: float
    seconds: float


def train_share(
    settings: FLSettings,
    partition: int,
    weights: dict[str, np.ndarray] | list[np.ndarray],
    round_: int,
    proximal_mu: float = 0.0,
) -> TrainedShare:
    """Train the global weights on this partition for the run's local epochs.

    ``weights`` is by name, or (as NumPyClient sends it) a list in the model's own order.
    Shared by the plain ClientApp and the SecAgg+ one, so both learn identically."""
    x, y, classes = client_share(settings, partition)
    torch.set_num_threads(1)  # nodes share the machine's cores with each other
    model = build_model(settings.model, classes)
    if isinstance(weights, list):
        weights = dict(zip(model.state_dict(), weights, strict=True))
    set_weights(model, weights)
    started = time.perf_counter()
    loss = train_local(
        model,
        x,
        y,
        TrainSettings(
            settings.local_epochs,
            settings.lr * settings.lr_decay ** max(round_ - 1, 0),
            settings.batch,
            proximal_mu=proximal_mu,
            seed=settings.seed * 100_003 + partition * 1_009 + round_,
        ),
    )
    seconds = time.perf_counter() - started
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return TrainedShare(state, len(y), loss, seconds)


def client_share(settings: FLSettings, partition: int) -> tuple[np.ndarray, np.ndarray, int]:
    """This client's inputs and labels, and the number of classes."""
    data = inputs_for(settings)
    if not 0 <= partition < settings.clients:
        raise ValueError(f"partition-id {partition} is outside 0..{settings.clients - 1}")
    parts = partition_indices(
        data.y_train, settings.clients, settings.partition_spec, settings.seed
    )
    rows = parts[partition]
    return data.x_train[rows], data.y_train[rows], len(data.classes)


def inputs_for(settings: FLSettings) -> FLData:
    """The whole data set as the run's model reads it (loaded once per process)."""
    return _inputs(settings.data, settings.model, settings.image_size)


@functools.lru_cache(maxsize=2)
def _inputs(data: str, model: str, image_size: int) -> FLData:
    images = load_images(Path(data), 32 if model == "cnn" else image_size)
    return model_inputs(images, model, image_size)
