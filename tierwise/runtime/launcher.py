"""The local cluster: every node and link proxy of a spec as its own process.

:class:`LocalCluster` resolves ports, writes the state directory, starts link proxies
then nodes, waits until each answers ``/healthz``, and stops them all on exit.
Children die with their parent (Linux ``PR_SET_PDEATHSIG``), so a killed launcher
leaves no orphans. A child that exits on its own is reported by :meth:`poll`; given a
:class:`~tierwise.runtime.supervise.RestartPolicy` (``tierwise up`` gives one), a
supervising thread also restarts it, with backoff, and gives up on a child that keeps
exiting while it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import httpx

from tierwise.config import ClusterSpec
from tierwise.errors import ClusterError, ConfigError
from tierwise.runtime.state import (
    ClusterState,
    check_port_free,
    resolve,
    write_api_keys,
    write_token,
)
from tierwise.runtime.supervise import CrashHistory, RestartPolicy

PID_FILE = "launcher.pid"


class Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


Kind = Literal["node", "link", "gateway"]
#: how often the supervising thread looks at its children
WATCH_S = 0.1


@dataclass
class Child:
    """One process of the cluster. A restart replaces ``process`` in place, so a
    reference to the child stays good across restarts."""

    name: str
    kind: Kind
    process: subprocess.Popen[bytes]
    health_url: str
    log_path: Path
    log_file: IO[bytes]
    spawned_at: float = 0.0
    #: Seconds from spawn until /healthz first answered 200 (None until then).
    startup_seconds: float | None = None
    reported: bool = False
    #: How many times the supervisor restarted it.
    restarts: int = 0
    #: ``time.monotonic()`` when a restart is due (None while none is pending).
    restart_at: float | None = None

    @property
    def healthy_at(self) -> float | None:
        """``time.monotonic()`` when the current process first answered /healthz."""
        if self.startup_seconds is None:
            return None
        return self.spawned_at + self.startup_seconds

    def log_tail(self, lines: int = 15) -> str:
        self.log_file.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class ChildExit:
    name: str
    kind: str
    returncode: int
    log_tail: str


class LocalCluster:
    """Start with ``with LocalCluster(spec, state_dir) as cluster:`` or start()/stop()."""

    def __init__(
        self,
        spec: ClusterSpec,
        state_dir: Path,
        *,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
        restart: RestartPolicy | None = None,
        wait_for_profiles: bool = True,
    ) -> None:
        """``restart``: restart children that exit on their own (None: only report them,
        which fault-injection tests rely on to keep a killed node down).
        ``wait_for_profiles``: start() returns only once the gateway's background profiling
        is done, so that every plan can be chosen (tests, benchmarks, the demo); ``tierwise
        up`` returns as soon as the gateway serves."""
        self.spec = spec
        self.state_dir = Path(state_dir)
        self._token = token
        self._env = dict(os.environ if env is None else env)
        self.startup_timeout = startup_timeout
        self.restart = restart
        self.wait_for_profiles = wait_for_profiles
        self.children: list[Child] = []
        self.phase = Phase.NEW
        self._state: ClusterState | None = None
        self._say: Callable[[str], None] = lambda _: None
        # The supervising thread and the caller share the children and the phase.
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._exits: list[ChildExit] = []
        self._failure: ClusterError | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise ClusterError("the cluster has not been started")
        return self._state

    @property
    def token(self) -> str:
        if self._token is None:
            raise ClusterError("the cluster has not been started")
        return self._token

    def start(self, progress: Callable[[str], None] = lambda _: None) -> ClusterState:
        """Start every child and wait until each is healthy. ``progress`` hears of each
        child coming up, and later of each restart."""
        if self.phase is not Phase.NEW:
            raise ClusterError("a LocalCluster can be started once; make a new one to start again")
        self._preflight()
        self._claim_state_dir()
        self._state = resolve(self.spec, self.state_dir)
        self._state.save()
        self._token = write_token(
            self.state_dir, self._token or self._env.get(self.spec.auth.token_env)
        )
        self._provide_api_keys()
        self._say = progress
        self.phase = Phase.RUNNING
        try:
            for link in self._state.spec.links:
                self._spawn("link", link.name, self._state.links[link.name].control_url)
            for node in self._state.spec.nodes:
                self._spawn("node", node.name, self._state.node_url(node.name))
            self._wait_healthy(progress)
            if self._state.spec.gateway is not None:
                # The gateway learns the nodes' models from them as it starts (and then
                # profiles what is missing in the background), so the nodes come first.
                self._spawn("gateway", "gateway", self._state.gateway_url)
                self._wait_healthy(progress)
                if self.wait_for_profiles:
                    self._wait_profiled(progress)
        except BaseException:
            self.stop()
            raise
        if self.restart is not None:
            self._supervisor = threading.Thread(
                target=self._supervise, args=(self.restart,), name="tierwise-supervisor"
            )
            self._supervisor.daemon = True
            self._supervisor.start()
        return self._state

    def stop(self, grace: float = 5.0) -> None:
        """Terminate every child (SIGTERM, then SIGKILL after ``grace`` seconds). The
        supervisor is halted first, so nothing stopped here is restarted."""
        with self._lock:
            if self.phase in (Phase.STOPPING, Phase.STOPPED):
                return
            self.phase = Phase.STOPPING
        self._halt.set()
        if self._supervisor is not None:
            self._supervisor.join()
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
            child.log_file.close()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / PID_FILE).unlink()
        self.phase = Phase.STOPPED

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- watching ----------------------------------------------------------

    def poll(self) -> list[ChildExit]:
        """Children that have exited since the last call. Raises the supervisor's
        :class:`ClusterError` once it has given up on a child."""
        if self._failure is not None:
            raise self._failure
        with self._lock:
            if self._supervisor is None:
                for child in self.children:
                    self._note_exit(child)
            exits, self._exits = self._exits, []
        return exits

    def _note_exit(self, child: Child) -> int | None:
        """Record the child's exit once; its exit code, or None while it runs."""
        code = child.process.poll()
        if code is not None and not child.reported:
            child.reported = True
            self._exits.append(ChildExit(child.name, child.kind, code, child.log_tail()))
        return code

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise ClusterError(
            f"no process named {name!r}; children are {[c.name for c in self.children]}"
        )

    # -- internals ---------------------------------------------------------

    def _preflight(self) -> None:
        for i, link in enumerate(self.spec.links):
            if link.emulate is None:
                raise ConfigError(
                    f"links[{i}] ({link.name}): a local cluster emulates every link; add an "
                    "`emulate:` block with at least `bandwidth`"
                )
        for i, node in enumerate(self.spec.nodes):
            if node.port:
                check_port_free(node.host, node.port, f"nodes[{i}].port")
        for i, link in enumerate(self.spec.links):
            if link.control_port:
                check_port_free("127.0.0.1", link.control_port, f"links[{i}].control_port")
        gateway = self.spec.gateway
        if gateway is not None and gateway.port:
            check_port_free(gateway.host, gateway.port, "gateway.port")

    def _claim_state_dir(self) -> None:
        pid_path = self.state_dir / PID_FILE
        if pid_path.exists():
            with contextlib.suppress(ValueError):
                pid = int(pid_path.read_text().strip())
                if _alive(pid) and pid != os.getpid():
                    raise ClusterError(
                        f"a cluster launched by process {pid} is already using {self.state_dir}; "
                        "stop it (Ctrl-C in its terminal) or choose another --state-dir"
                    )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        pid_path.write_text(str(os.getpid()))

    def _provide_api_keys(self) -> None:
        """Generate the gateway's env-held API keys that the environment does not set."""
        gateway = self.spec.gateway
        if gateway is None:
            return
        generated = {}
        for key in gateway.api_keys:
            if key.key_env is not None and not self._env.get(key.key_env):
                value = "tw-" + secrets.token_urlsafe(24)
                self._env[key.key_env] = value
                generated[key.name] = value
        if generated:
            write_api_keys(self.state_dir, generated)

    def _spawn(self, kind: Kind, name: str, base_url: str) -> None:
        log_dir = self.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{kind}-{name}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        process = self._popen(kind, name, log_file)
        self.children.append(
            Child(name, kind, process, f"{base_url}/healthz", log_path, log_file, time.monotonic())
        )

    def _popen(self, kind: Kind, name: str, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        env = dict(self._env)
        env[self.spec.auth.token_env] = self.token
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Spinning OpenMP workers (torch) starve every other process on a small busy
        # machine; several nodes start at once, so they sleep while they wait instead.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        command = [
            sys.executable,
            "-m",
            "tierwise",
            kind,
            "serve",
            "--state-dir",
            str(self.state_dir),
        ]
        if kind != "gateway":
            command += ["--node" if kind == "node" else "--link", name]
        return subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )

    def _wait_healthy(self, progress: Callable[[str], None]) -> None:
        pending = {c.name: c for c in self.children if c.startup_seconds is None}
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for name, child in list(pending.items()):
                    code = child.process.poll()
                    if code is not None:
                        raise ClusterError(
                            f"{child.kind} {name} exited with code {code} while starting; "
                            f"its log ({child.log_path}) ends with:\n{child.log_tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(child.health_url).status_code == 200:
                            child.startup_seconds = time.monotonic() - child.spawned_at
                            del pending[name]
                            progress(f"{child.kind} {name} is up")
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"not healthy after {self.startup_timeout:.0f}s: {sorted(pending)}; "
                        f"see the logs in {self.state_dir / 'logs'}"
                    )
                if pending:
                    time.sleep(0.1)

    def _wait_profiled(self, progress: Callable[[str], None]) -> None:
        gateway = self.child("gateway")
        deadline = gateway.spawned_at + self.startup_timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                if gateway.process.poll() is not None:
                    raise ClusterError(
                        f"the gateway exited while profiling; its log ({gateway.log_path}) "
                        f"ends with:\n{gateway.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    state = str(client.get(gateway.health_url).json().get("profiling"))
                    if state.startswith("failed"):
                        raise ClusterError(f"the gateway's profiling {state}")
                    if state != "running":
                        progress("gateway profiled every node and codec")
                        return
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"the gateway was still profiling after {self.startup_timeout:.0f}s; "
                        f"see its log in {gateway.log_path}"
                    )
                time.sleep(0.2)

    # -- supervision (in its own thread) -------------------------------------

    def _supervise(self, policy: RestartPolicy) -> None:
        """Restart children that exit, until stop(). After giving up it idles rather than
        returning: children it spawned would get SIGTERM when it ends (PDEATHSIG goes to
        the spawning thread), and stop() is what ends them."""
        histories = {c.name: CrashHistory(policy) for c in self.children}
        with httpx.Client(timeout=1.0) as client:
            while not self._halt.wait(WATCH_S):
                try:
                    for child in self.children:
                        self._watch(child, histories[child.name], client)
                except ClusterError as exc:
                    self._failure = exc
                    self._say(f"giving up: {exc.message}")
                    self._halt.wait()

    def _watch(self, child: Child, history: CrashHistory, client: httpx.Client) -> None:
        with self._lock:
            if self.phase is not Phase.RUNNING:
                return
            now = time.monotonic()
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._respawn(child, history.restarts)
                return
            code = self._note_exit(child)
            if code is not None:
                self._schedule_restart(child, code, history, now)
                return
        if child.startup_seconds is None:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(child.health_url).status_code == 200:
                    child.startup_seconds = time.monotonic() - child.spawned_at
                    self._say(
                        f"{child.kind} {child.name} is healthy again, "
                        f"{child.startup_seconds:.1f} s after restart {child.restarts}"
                    )

    def _schedule_restart(self, child: Child, code: int, history: CrashHistory, now: float) -> None:
        delay = history.exited(now, child.healthy_at)
        if delay is None:
            policy = history.policy
            raise ClusterError(
                f"{child.kind} {child.name} exited {history.unstable_exits} times within "
                f"{policy.window:.0f} s while starting (last exit code {code}); not restarting "
                f"it again. Its log ({child.log_path}) ends with:\n{child.log_tail()}"
            )
        child.restart_at = now + delay
        self._say(
            f"{child.kind} {child.name} exited (code {code}); restarting in {delay:.1f} s "
            f"(restart {history.restarts})"
        )

    def _respawn(self, child: Child, restarts: int) -> None:
        child.log_file.close()
        # Appended, so the log keeps what the dead process said before it died.
        child.log_file = open(child.log_path, "ab")  # noqa: SIM115 - closed in stop()
        child.log_file.write(f"--- tierwise up: restart {restarts} ---\n".encode())
        child.log_file.flush()
        child.process = self._popen(child.kind, child.name, child.log_file)
        child.spawned_at = time.monotonic()
        child.startup_seconds, child.restart_at = None, None
        child.reported = False
        child.restarts = restarts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM us when the launcher dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
