"""Process entry points: serve one node, or one link proxy, from a cluster state file
(the gateway's is :mod:`tierwise.gateway.serve`).

These run in the child processes that ``tierwise up`` starts (or on a real machine,
one node per host). Settings are read from the environment here, at the process
edge, and passed down; nothing below reads ``os.environ``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from tierwise.config import ClusterSpec
from tierwise.errors import ConfigError
from tierwise.runtime.state import ClusterState


def token_from_env(spec: ClusterSpec, env: Mapping[str, str]) -> str | None:
    token = env.get(spec.auth.token_env) or None
    if spec.auth.required and not token:
        raise ConfigError(
            f"auth.token_env: environment variable {spec.auth.token_env} is not set, and "
            "auth.required is true; set it to the cluster's shared token"
        )
    return token


def serve_node(state_dir: Path, node_name: str, env: Mapping[str, str] = os.environ) -> None:
    from tierwise.ledger.energy import RaplMeter
    from tierwise.models.registry import load_node_models
    from tierwise.runtime.model_codecs import load_node_codecs
    from tierwise.runtime.node_app import NodeSettings, create_node_app
    from tierwise.runtime.stage_relay import Relay

    state = ClusterState.load(state_dir)
    node = state.spec.node(node_name)
    token = token_from_env(state.spec, env)
    threads = node.threads or os.cpu_count() or 1
    _set_torch_threads(threads)
    models = load_node_models(state.spec, node, env, threads)
    try:
        load_node_codecs(state.spec, node)
        rapl = RaplMeter() if state.spec.energy.rapl else None
        relay = Relay(lambda peer: state.url_from(node.tier, peer), token)
        meter = rapl if rapl and rapl.available else None
        settings = NodeSettings(state.spec, node, token, meter, relay)
        app = create_node_app(settings, models)
        uvicorn.Server(uvicorn_config(app, node.host, node.port)).run()
    finally:
        models.close()


def serve_link(state_dir: Path, link_name: str, env: Mapping[str, str] = os.environ) -> None:
    state = ClusterState.load(state_dir)
    token = token_from_env(state.spec, env)
    asyncio.run(_serve_link(state, link_name, token))


async def _serve_link(state: ClusterState, link_name: str, token: str | None) -> None:
    from tierwise.net.link_control import create_link_app
    from tierwise.net.link_proxy import Direction, LinkProxy, LinkSettings, Route

    link = state.spec.link(link_name)
    endpoints = state.links[link.name]
    routes = []
    for node_name, port in endpoints.forward_ports.items():
        node = state.spec.node(node_name)
        direction: Direction = "up" if node.tier == link.b else "down"
        routes.append(Route(node_name, node.host, node.port, direction, endpoints.host, port))
    if link.emulate is None:
        raise ConfigError(
            f"links.{link.name}: a link proxy needs an `emulate:` block to shape traffic"
        )
    proxy = LinkProxy(link.name, LinkSettings.from_spec(link.emulate), routes)
    async with proxy:
        app = create_link_app(proxy, token)
        server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", link.control_port))
        await server.serve()


#: How long an idle keep-alive connection stays open. uvicorn's default (5 s) equals
#: httpx's default pool expiry (5 s): a client could send its next request on a
#: connection at the moment the server closed it, and get "Server disconnected without
#: sending a response" (seen in `tierwise bench placement` at 100 KB/s, where the close
#: crawls through the emulated link). Servers that outlast their clients' pools end that.
KEEP_ALIVE_S = 30


def uvicorn_config(app: object, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
