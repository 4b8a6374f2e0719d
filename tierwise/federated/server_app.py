"""The Flower ServerApp: the strategy stack, central evaluation, and the run's report.

The stack, outermost first: ``CompressedUpdates`` (decode, check, account) around
Flower's DP client-side clipping wrapper (with ``--dp``) around Flower's FedAvg or
FedProx. The server holds the test set and evaluates the global model after every round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAvg,
    FedProx,
    Strategy,
)

from tierwise.federated.client_app import inputs_for
from tierwise.federated.client_mods import record_weights, weights_record
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.fl_model import (
    build_model,
    evaluate,
    get_weights,
    parameter_count,
    set_weights,
)
from tierwise.federated.link_accounting import RoundRecord
from tierwise.federated.run_report import build_report, write_report
from tierwise.federated.update_strategy import CompressedUpdates

OnRound = Callable[[RoundRecord], None]


def build_strategy(settings: FLSettings) -> CompressedUpdates:
    minimum = min(settings.min_clients, settings.clients)
    common: dict[str, Any] = {
        "fraction_train": settings.fraction,
        "fraction_evaluate": 0.0,  # the server evaluates centrally instead
        "min_train_nodes": minimum,
        "min_evaluate_nodes": 0,
        "min_available_nodes": settings.clients,
    }
    inner: Strategy
    if settings.strategy == "fedprox":
        inner = FedProx(proximal_mu=settings.proximal_mu, **common)
    else:
        inner = FedAvg(**common)
    if settings.dp:
        inner = DifferentialPrivacyClientSideFixedClipping(
            inner,
            noise_multiplier=settings.dp_noise_multiplier,
            clipping_norm=settings.dp_clipping_norm,
            num_sampled_clients=max(int(settings.clients * settings.fraction), minimum),
        )
    return CompressedUpdates(inner, settings)


def run_server(
    grid: Grid, settings: FLSettings, on_round: OnRound = lambda _: None
) -> dict[str, Any]:
    """Run every round; return (and, if ``settings.report`` is set, write) the report."""
    data = inputs_for(settings)
    torch.manual_seed(settings.seed)
    model = build_model(settings.model, len(data.classes))
    strategy = build_strategy(settings)
    initial: dict[str, float] = {}

    def central_evaluation(round_: int, arrays: ArrayRecord) -> MetricRecord:
        set_weights(model, record_weights(arrays))
        accuracy, loss = evaluate(model, data.x_test, data.y_test)
        if round_ == 0:
            initial.update(accuracy=accuracy, loss=loss)
        elif strategy.rounds and strategy.rounds[-1].round == round_:
            strategy.rounds[-1].accuracy, strategy.rounds[-1].loss = accuracy, loss
            on_round(strategy.rounds[-1])
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    started = time.perf_counter()
    result = strategy.start(
        grid,
        weights_record(get_weights(model)),
        num_rounds=settings.rounds,
        timeout=settings.round_timeout,
        train_config=ConfigRecord(dict(settings.to_record())),
        evaluate_fn=central_evaluation,
    )
    final = record_weights(result.arrays) if result.arrays is not None else get_weights(model)
    report = build_report(settings, strategy.rounds, initial, time.perf_counter() - started, final)
    if settings.report:
        write_report(settings.report, report, final)
    return report


def make_server_app(settings: FLSettings, on_round: OnRound, sink: dict[str, Any]) -> ServerApp:
    """A ServerApp bound to in-process settings (simulation); the report lands in ``sink``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        sink["report"] = serve(grid, context, settings, on_round)

    return app


# A deployment's ServerApp: the settings arrive as Flower's run config (see deployment.py).
app = ServerApp()


@app.main()
def deployed_main(grid: Grid, context: Context) -> None:
    serve(grid, context, FLSettings.from_record(context.run_config))


def serve(
    grid: Grid, context: Context, settings: FLSettings, on_round: OnRound = lambda _: None
) -> dict[str, Any]:
    """The run, through SecAgg+ when the settings ask for it."""
    if settings.secagg:
        from tierwise.federated.secagg import run_secagg_server

        return run_secagg_server(grid, context, settings, on_round)
    return run_server(grid, settings, on_round)


def parameters_of(settings: FLSettings) -> int:
    return parameter_count(build_model(settings.model, len(inputs_for(settings).classes)))
