"""Run a federated job on Flower's simulation engine (Ray), in this process.

The ServerApp runs in a thread here; each virtual SuperNode's ClientApp runs in a Ray
worker, at most one per core. The data set (and the backbone features for the ``head``
model) are prepared here first, so workers only read the cache.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from tierwise.errors import InputError
from tierwise.federated.client_app import app as client_app
from tierwise.federated.client_app import inputs_for
from tierwise.federated.fl_config import FLSettings
from tierwise.federated.server_app import OnRound, make_server_app


def run_simulated(
    settings: FLSettings, on_round: OnRound = lambda _: None, workers: int | None = None
) -> dict[str, Any]:
    """Train for ``settings.rounds`` rounds; the report ``run_server`` wrote."""
    from flwr.simulation import run_simulation

    inputs_for(settings)  # build or load the cache before any worker needs it
    app = client_app
    if settings.secagg:
        from tierwise.federated.secagg import client_app as app
    cpus = workers or os.cpu_count() or 1
    sink: dict[str, Any] = {}
    # Quiet Ray and Flower: the CLI shows its own per-round progress.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=make_server_app(settings, on_round, sink),
            client_app=app,
            num_supernodes=settings.clients,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {
                    "num_cpus": cpus,
                    "num_gpus": 0,
                    "logging_level": "ERROR",
                    "include_dashboard": False,
                    "log_to_driver": False,
                },
            },
        )
    if "report" not in sink:
        raise InputError("the federated run ended without a report; see the log above")
    report: dict[str, Any] = sink["report"]
    return report
