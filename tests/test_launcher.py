"""The local cluster launcher: start-up, death reports, clean stops and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import small_spec
from tierwise.errors import ClusterError, ConfigError
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import ClusterState


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


def _wait_until(predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_cluster_starts_serves_and_stops(state_dir: Path) -> None:
    with LocalCluster(small_spec(), state_dir) as cluster:
        url = cluster.state.node_url("solo")
        assert httpx.get(url + "/healthz").status_code == 200
        assert ClusterState.load(state_dir).node_url("solo") == url
        assert (state_dir / "token").stat().st_mode & 0o777 == 0o600
    assert not _processes_mentioning(str(state_dir))
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")


def test_a_node_that_dies_is_reported(state_dir: Path) -> None:
    with LocalCluster(small_spec(), state_dir) as cluster:
        assert cluster.poll() == []
        cluster.child("solo").process.kill()
        assert _wait_until(lambda: cluster.child("solo").process.poll() is not None)
        exits = cluster.poll()
        assert [(e.name, e.kind, e.returncode) for e in exits] == [
            ("solo", "node", -signal.SIGKILL)
        ]
        assert cluster.poll() == []  # reported once


def test_a_node_that_cannot_start_fails_start_with_its_log(state_dir: Path) -> None:
    spec = small_spec()
    data = spec.model_dump(mode="json")
    data["models"]["llm"] = {"kind": "llama-cpp", "gguf": {"path": "/nonexistent/model.gguf"}}
    data["nodes"][0]["models"].append("llm")
    broken = type(spec).model_validate(data)
    cluster = LocalCluster(broken, state_dir, startup_timeout=60)
    with pytest.raises(
        ClusterError,
        match=r"(?s)node solo exited with code \d+ while starting.*GGUF model file not found",
    ):
        cluster.start()
    assert not _processes_mentioning(str(state_dir))


def test_port_in_use_is_named(state_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"nodes\[0\]\.port: port {port} on 127.0.0.1 is already in use"
        ):
            LocalCluster(small_spec(port=port), state_dir).start()


def test_start_twice_and_shared_state_dir_are_refused(state_dir: Path) -> None:
    with LocalCluster(small_spec(), state_dir) as cluster:
        with pytest.raises(ClusterError, match="can be started once"):
            cluster.start()
        # Another launcher (a different process) must not take over a live state dir.
        code = (
            "import sys; from pathlib import Path; from tests.conftest import small_spec;"
            "from tierwise.runtime.launcher import LocalCluster;"
            f"LocalCluster(small_spec(), Path({str(state_dir)!r})).start()"
        )
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert other.returncode != 0
        assert "already using" in other.stderr


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_spec().model_dump(mode="json")))
    return path


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_up(
    tmp_path: Path, state_dir: Path, sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    """``sigint_ignored``: start it the way a script's ``cmd &`` does, SIGINT inherited as
    ignored, so Ctrl-C only works if ``tierwise up`` sets its own handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERWISE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tierwise",
            "up",
            "--config",
            str(_spec_file(tmp_path)),
            "--state-dir",
            str(state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "COLUMNS": "200"},
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C to stop" in line:
            return proc
    raise AssertionError("tierwise up never became healthy:\n" + "".join(lines))


def test_up_prints_endpoints_and_ctrl_c_stops_everything(tmp_path: Path, state_dir: Path) -> None:
    proc = _start_up(tmp_path, state_dir, sigint_ignored=True)
    children = [p for p in _processes_mentioning(str(state_dir)) if p != proc.pid]
    assert children, "the node process should be running"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "all processes stopped" in out
    assert _wait_until(lambda: not _processes_mentioning(str(state_dir)), timeout=10)


def test_killed_launcher_leaves_no_orphans(tmp_path: Path, state_dir: Path) -> None:
    proc = _start_up(tmp_path, state_dir)
    assert len(_processes_mentioning(str(state_dir))) >= 2
    proc.kill()  # SIGKILL: the launcher gets no chance to clean up
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    assert _wait_until(lambda: not _processes_mentioning(str(state_dir)), timeout=15)
