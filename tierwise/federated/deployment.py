"""``tierwise fl up``: a real Flower deployment on loopback, each part its own process.

- one SuperLink (``flower-superlink``), serving the Fleet and Control APIs on one port;
- one tierwise link proxy per client, shaping that client's traffic to its EMULATED
  uplink/downlink rate and counting the bytes that really crossed it;
- one SuperNode per client (``flower-supernode``), reaching the SuperLink only through
  its proxy, with ``partition-id`` in its node config;
- the run, submitted with ``flwr run`` from a small generated Flower App whose
  components are tierwise's ServerApp and ClientApp, and polled with ``flwr ls``.

Everything lives under one work folder (Flower's home, the app, the logs, the report).
Every process is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tierwise.errors import TierwiseError
from tierwise.federated.fl_config import FLSettings
from tierwise.net.link_proxy import LinkProxy, LinkSettings, Route
from tierwise.runtime.state import free_port

CONNECTION = "tierwise"
Event = Callable[[str], None]


class DeploymentError(TierwiseError):
    """A Flower process did not start, or the run failed; the message says which log."""


@dataclass
class Deployment:
    settings: FLSettings
    workdir: Path
    superlink_port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    proxies: list[LinkProxy] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            # SuperLink and SuperNode start flower-superexec and the apps by bare name.
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_HOME": str(self.workdir / "flwr-home"),
            # No internet: never let Flower try to `uv sync` app dependencies.
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        }


def run_deployed(
    settings: FLSettings, workdir: Path, on_event: Event = lambda _: None, limit_s: float = 1800
) -> dict[str, Any]:
    """Start everything, run the job, stop everything; the run's report."""
    if not settings.report:
        settings = settings.model_copy(update={"report": str(workdir / "report.json")})
    deployment = Deployment(settings, workdir)
    deployment.logs.mkdir(parents=True, exist_ok=True)
    with _proxy_loop() as loop, _cleanup(deployment, loop):
        _start_superlink(deployment, on_event)
        _start_nodes(deployment, loop, on_event)
        app = _write_app(deployment)
        run_id = _submit(deployment, app)
        on_event(f"run {run_id} submitted; waiting for {settings.rounds} rounds")
        status = _wait(deployment, run_id, limit_s)
        counters = [p.counters for p in deployment.proxies]
    report_path = Path(settings.report)
    if status != "finished:completed" or not report_path.is_file():
        raise DeploymentError(
            f"run {run_id} ended {status!r}; see `flwr log` output in {deployment.logs}"
        )
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["proxy_bytes"] = [
        {"partition": i, "up": c.bytes_up, "down": c.bytes_down} for i, c in enumerate(counters)
    ]
    report["run_id"] = run_id
    report_path.write_text(json.dumps(report, indent=1))
    return report


# -- processes ----------------------------------------------------------------------------


def _launch(deployment: Deployment, name: str, command: list[str]) -> None:
    log = (deployment.logs / f"{name}.log").open("wb")
    # Each in its own process group: on the way out the whole group goes, including the
    # superexec and app processes Flower starts underneath.
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=deployment.env(),
        cwd=deployment.workdir,
        start_new_session=True,
    )
    deployment.processes.append(process)


def _start_superlink(deployment: Deployment, on_event: Event) -> None:
    port = free_port("127.0.0.1", set())
    deployment.superlink_port = port
    _launch(
        deployment,
        "superlink",
        [_tool("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
         "--disable-runtime-dependency-installation"],
    )  # fmt: skip
    _wait_for_port(deployment, port, "superlink", 60.0)
    on_event(f"SuperLink listening on 127.0.0.1:{port}")


def _start_nodes(deployment: Deployment, loop: asyncio.AbstractEventLoop, on_event: Event) -> None:
    settings = deployment.settings
    used = {deployment.superlink_port}
    for partition in range(settings.clients):
        up, down = settings.link_rates(partition)
        proxy = LinkProxy(
            f"client-{partition}",
            LinkSettings(bandwidth=up, downlink=down, rtt=0.0, loss=0.0),
            [Route("superlink", "127.0.0.1", deployment.superlink_port, "up")],
        )
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
        deployment.proxies.append(proxy)
        proxy_port = proxy.bound_ports["superlink"]
        node_port = free_port("127.0.0.1", used | {proxy_port})
        used |= {proxy_port, node_port}
        _launch(
            deployment,
            f"supernode-{partition}",
            [_tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{proxy_port}",
             "--host", "127.0.0.1", "--port", str(node_port),
             "--node-config", f"partition-id={partition} num-partitions={settings.clients}"],
        )  # fmt: skip
        on_event(
            f"SuperNode {partition} via link proxy :{proxy_port} "
            f"({up / 1e3:.0f} KB/s up, {down / 1e3:.0f} KB/s down, EMULATED)"
        )


def _write_app(deployment: Deployment) -> Path:
    """A Flower App folder holding only its pyproject: the code is the installed tierwise."""
    app = deployment.workdir / "app"
    app.mkdir(exist_ok=True)
    project = {
        "project": {"name": "tierwise-fl", "version": "1.0.0",
                    "description": "tierwise federated learning"},
        "tool": {"flwr": {"app": {
            "publisher": "tierwise",
            "components": {"serverapp": "tierwise.federated.server_app:app",
                           "clientapp": _client_component(deployment.settings)},
            "config": deployment.settings.to_record(),
        }}},
    }  # fmt: skip
    (app / "pyproject.toml").write_text(tomli_w.dumps(project))
    home = deployment.workdir / "flwr-home"
    home.mkdir(exist_ok=True)
    connection = {
        "superlink": {
            "default": CONNECTION,
            CONNECTION: {"address": f"127.0.0.1:{deployment.superlink_port}", "insecure": True},
        }
    }
    (home / "config.toml").write_text(tomli_w.dumps(connection))
    return app


def _client_component(settings: FLSettings) -> str:
    if settings.secagg:
        return "tierwise.federated.secagg:client_app"
    return "tierwise.federated.client_app:app"


def _submit(deployment: Deployment, app: Path) -> int:
    done = _flwr(deployment, ["run", str(app), CONNECTION, "--format", "json"], 120.0)
    try:
        return int(json.loads(done)["run-id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"`flwr run` did not return a run id: {done[-2000:]}") from exc


# Each `flwr ls` is a new Python process, about 1.5 s of CPU that the clients need on a
# small machine; so Flower is asked rarely, and at once when the ServerApp's report lands.
ASK_EVERY_S = 10.0
LOOK_EVERY_S = 0.5


def _wait(deployment: Deployment, run_id: int, limit_s: float) -> str:
    """Wait for the run to finish; the final status string."""
    deadline = time.monotonic() + limit_s
    report = Path(deployment.settings.report)
    before = _stamp(report)  # a report left by an earlier run is not this run's
    next_ask = time.monotonic() + ASK_EVERY_S
    while time.monotonic() < deadline:
        for process in deployment.processes:
            if process.poll() is not None:
                raise DeploymentError(
                    f"a Flower process exited (pid {process.pid}); see {deployment.logs}"
                )
        if _stamp(report) != before or time.monotonic() >= next_ask:
            status = _status(deployment, run_id)
            if status.startswith("finished"):
                if status != "finished:completed":
                    log = _flwr(deployment, ["log", str(run_id), CONNECTION, "--show"], check=False)
                    (deployment.logs / "serverapp.log").write_text(log)
                return status
            next_ask = time.monotonic() + ASK_EVERY_S
        time.sleep(LOOK_EVERY_S)
    raise DeploymentError(f"run {run_id} did not finish within {limit_s:.0f} s")


def _status(deployment: Deployment, run_id: int) -> str:
    out = _flwr(deployment, ["ls", CONNECTION, "--run-id", str(run_id), "--format", "json"])
    runs = json.loads(out).get("runs", [])
    return str(runs[0].get("status", "")) if runs else ""


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _flwr(
    deployment: Deployment, args: list[str], timeout: float = 60.0, check: bool = True
) -> str:
    done = subprocess.run(
        [_tool("flwr"), *args],
        capture_output=True,
        text=True,
        env=deployment.env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise DeploymentError(f"`flwr {args[0]}` failed: {(done.stderr or done.stdout)[-2000:]}")
    return done.stdout


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise DeploymentError(f"{name} is not installed beside {sys.executable}; pip install flwr")
    return str(path)


def _wait_for_port(deployment: Deployment, port: int, name: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if any(p.poll() is not None for p in deployment.processes):
            break
        time.sleep(0.25)
    raise DeploymentError(f"{name} did not listen on port {port}; see {deployment.logs}/{name}.log")


# -- lifetime -----------------------------------------------------------------------------


@contextlib.contextmanager
def _proxy_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop in a thread, for the link proxies."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fl-link-proxies", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@contextlib.contextmanager
def _cleanup(deployment: Deployment, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(deployment.processes):
            _signal_group(process, signal.SIGTERM)
        for process in deployment.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            _signal_group(process, signal.SIGKILL)  # whatever of the group outlived it
        for proxy in deployment.proxies:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=5)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
