"""The resolved state of a running cluster: every port fixed, every route known.

``tierwise up`` resolves a spec (ports of 0 become free ports), writes the result as
``cluster.json`` in its state directory and hands the file to every child process.
Other commands (``tierwise link set``, the demo, tests) read the same file to find
the cluster. The bearer token is kept beside it in ``token``, readable by its owner only.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tierwise.config import ClusterSpec, Tier
from tierwise.errors import ClusterError, ConfigError, NotFoundError

STATE_FILE = "cluster.json"
TOKEN_FILE = "token"
API_KEYS_FILE = "api_keys.json"


class LinkEndpoints(BaseModel):
    """Where a link proxy listens: its control API, and one forwarding port per node."""

    model_config = ConfigDict(frozen=True)

    name: str
    control_url: str
    forward_ports: dict[str, int]
    host: str = "127.0.0.1"


class ClusterState(BaseModel):
    model_config = ConfigDict(frozen=True)

    spec: ClusterSpec
    links: dict[str, LinkEndpoints]
    state_dir: Path

    # -- addresses ---------------------------------------------------------

    def node_url(self, node_name: str) -> str:
        """The node's own address, as seen from its own tier."""
        node = self.spec.node(node_name)
        return f"http://{node.host}:{node.port}"

    def url_from(self, tier: Tier, node_name: str) -> str:
        """The address a caller on ``tier`` uses to reach ``node_name``: direct within a
        tier, through the link proxy between tiers."""
        node = self.spec.node(node_name)
        if node.tier == tier:
            return self.node_url(node_name)
        link = self.spec.link_between(tier, node.tier)
        if link is None:
            raise NotFoundError(f"no link between tier {tier!r} and tier {node.tier!r}")
        endpoints = self.links[link.name]
        return f"http://{endpoints.host}:{endpoints.forward_ports[node_name]}"

    @property
    def gateway_url(self) -> str:
        if self.spec.gateway is None:
            raise NotFoundError("this cluster has no gateway")
        return f"http://{self.spec.gateway.host}:{self.spec.gateway.port}"

    @property
    def ledger_url(self) -> str:
        if self.spec.gateway is not None and self.spec.gateway.ledger_url:
            return self.spec.gateway.ledger_url
        return f"sqlite:///{self.state_dir / 'ledger.db'}"

    def link_endpoints(self, name: str) -> LinkEndpoints:
        link = self.spec.link(name)
        return self.links[link.name]

    # -- persistence -------------------------------------------------------

    def save(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)  # atomic: readers never see half a file
        return path

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        path = Path(state_dir) / STATE_FILE
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise ClusterError(
                f"no running cluster found: {path} does not exist. Start one with `tierwise up`."
            ) from exc


def resolve(spec: ClusterSpec, state_dir: Path) -> ClusterState:
    """Fix every port (0 → a free port) and lay out the link proxies' forwarding ports."""
    taken: set[int] = set()
    data = spec.model_dump(mode="python")
    for node in data["nodes"]:
        node["port"] = node["port"] or free_port(node["host"], taken)
        taken.add(node["port"])
    for link in data["links"]:
        link["control_port"] = link["control_port"] or free_port("127.0.0.1", taken)
        taken.add(link["control_port"])
    if data["gateway"] is not None:
        gw = data["gateway"]
        gw["port"] = gw["port"] or free_port(gw["host"], taken)
        taken.add(gw["port"])
    resolved = ClusterSpec.model_validate(data)
    links = {}
    for link in resolved.links:
        ends = [n for n in resolved.nodes if n.tier in (link.a, link.b)]
        forward = {}
        for node in ends:
            forward[node.name] = free_port("127.0.0.1", taken)
            taken.add(forward[node.name])
        links[link.name] = LinkEndpoints(
            name=link.name,
            control_url=f"http://127.0.0.1:{link.control_port}",
            forward_ports=forward,
        )
    return ClusterState(spec=resolved, links=links, state_dir=state_dir)


def free_port(host: str, avoid: set[int]) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise ClusterError(f"could not find a free port on {host}")


def check_port_free(host: str, port: int, field: str) -> None:
    """Refuse a port something listens on. The check binds the way the servers do, with
    SO_REUSEADDR, so sockets of a just-stopped cluster in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{field}: port {port} on {host} is already in use; stop what holds it, "
                "choose another port, or set it to 0 to pick a free one"
            ) from exc


# -- the shared token -------------------------------------------------------


def write_token(state_dir: Path, token: str | None) -> str:
    """Store the cluster's token (making one if ``token`` is None), owner-readable only."""
    token = token or secrets.token_urlsafe(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token)
    return token


def write_api_keys(state_dir: Path, keys: dict[str, str]) -> None:
    """The gateway's API keys that ``tierwise up`` generated, by key name (owner-only)."""
    path = state_dir / API_KEYS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(keys, handle)


def read_api_key(state_dir: Path, name: str = "default") -> str:
    path = Path(state_dir) / API_KEYS_FILE
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ClusterError(
            f"no generated API keys at {path}: the gateway's keys come from your environment"
        ) from exc
    if name not in keys:
        raise NotFoundError(f"no API key named {name!r} in {path}; names: {sorted(keys)}")
    return str(keys[name])


def read_token(state_dir: Path) -> str:
    path = Path(state_dir) / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ClusterError(f"no token at {path}; is a cluster running (`tierwise up`)?") from exc
