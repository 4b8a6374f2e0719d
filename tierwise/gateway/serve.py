"""The gateway's process entry point: serve at once, and profile what is missing meanwhile.

It runs in the child process that ``tierwise up`` starts (or on the client's own machine).
Settings are read from the environment here, at the process edge, and passed down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from tierwise.errors import ConfigError
from tierwise.runtime.serve import token_from_env, uvicorn_config
from tierwise.runtime.state import ClusterState

log = logging.getLogger("tierwise.serve")


def serve_gateway(state_dir: Path, env: Mapping[str, str] = os.environ) -> None:
    from tierwise.gateway.app import create_gateway_app
    from tierwise.gateway.background_profile import BackgroundProfiler
    from tierwise.gateway.gateway import Gateway
    from tierwise.gateway.keys import KeyRing
    from tierwise.ledger.store import Ledger
    from tierwise.placement.profiles import Profiles

    state = ClusterState.load(state_dir)
    gw = state.spec.gateway
    if gw is None:
        raise ConfigError("gateway: the cluster spec has no gateway section")
    token = token_from_env(state.spec, env)
    keys = KeyRing(gw.api_keys, env, node_token=token)
    ledger = Ledger(state.ledger_url)
    try:
        profiles = Profiles.from_rows(ledger.load_profiles())
        _log_profiling_progress()
        log.info("serving with %d stored profile numbers", len(profiles))
        profiler = BackgroundProfiler(state, token or "", ledger)
        gateway = Gateway(state, token or "", ledger, profiles, profiler=profiler)
        app = create_gateway_app(gateway, keys, gw.max_request_bytes)
        uvicorn.Server(uvicorn_config(app, gw.host, gw.port)).run()
    finally:
        ledger.close()


def _log_profiling_progress() -> None:
    """Profiling progress goes to the gateway's log (uvicorn's settings show warnings only)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    for name in ("tierwise.gateway.profile", log.name):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
