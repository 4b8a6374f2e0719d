"""The command line: live link control on a running cluster, spec checks, and the demo."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import RunningCluster
from tierwise.cli import app
from tierwise.errors import UpstreamError
from tierwise.net.link_client import LinkClient
from tierwise.runtime.node_client import NodeClient

runner = CliRunner(env={"COLUMNS": "250"})  # wide enough that rich never wraps a line


@pytest.fixture
def restore_links(cluster: RunningCluster) -> Iterator[None]:
    """Put every link of the shared cluster back as the spec has it."""
    yield
    for link in cluster.state.spec.links:
        assert link.emulate is not None
        with LinkClient(cluster.state.links[link.name].control_url, cluster.token) as client:
            client.up()
            client.set(
                link.emulate.bandwidth,
                link.emulate.down_bandwidth,
                link.emulate.rtt,
                link.emulate.loss,
            )


def _cli(cluster: RunningCluster, *args: str) -> str:
    result = runner.invoke(app, [*args, "--state-dir", str(cluster.state.state_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def test_link_set_changes_the_running_proxy(cluster: RunningCluster, restore_links: None) -> None:
    out = _cli(cluster, "link", "set", "device-edge", "300KB/s", "--rtt", "30ms")
    assert "EMULATED" in out and "300KB/s" in out and "RTT 30 ms" in out
    with LinkClient(cluster.state.links["device-edge"].control_url, cluster.token) as client:
        status = client.show()
    assert (status["bandwidth"], status["downlink"], status["rtt"]) == (
        300e3,
        300e3,
        pytest.approx(0.03),
    )
    out = _cli(cluster, "link", "set", "edge-device", "--downlink", "2MB/s", "--loss", "0.01")
    assert "down 2MB/s" in out and "up 300KB/s" in out and "loss 1.0%" in out


def test_link_down_fails_fast_and_local_tier_keeps_serving(
    cluster: RunningCluster, restore_links: None, photo_jpeg: bytes
) -> None:
    assert "DOWN" in _cli(cluster, "link", "down", "device-edge")

    async def through_link() -> None:
        async with NodeClient(cluster.url("edge"), cluster.token, timeout=10) as edge:
            await edge.classify("efficientnet-lite0", photo_jpeg)

    started = time.perf_counter()
    with pytest.raises(UpstreamError):
        asyncio.run(through_link())
    assert time.perf_counter() - started < 2.0

    async def local() -> str:
        async with NodeClient(cluster.url("device"), cluster.token) as device:
            return str(
                (await device.classify("efficientnet-lite0", photo_jpeg)).predictions[0]["label"]
            )

    assert asyncio.run(local())
    assert "online" in _cli(cluster, "link", "up", "device-edge")
    asyncio.run(through_link())


def test_bad_link_commands_explain_themselves(cluster: RunningCluster, restore_links: None) -> None:
    result = runner.invoke(
        app, ["link", "set", "device-moon", "1MB/s", "--state-dir", str(cluster.state.state_dir)]
    )
    assert result.exit_code == 2 and "no link named 'device-moon'" in result.output
    result = runner.invoke(
        app, ["link", "set", "device-edge", "fast", "--state-dir", str(cluster.state.state_dir)]
    )
    assert result.exit_code == 1 and "cannot read 'fast' as a rate" in result.output
    result = runner.invoke(app, ["link", "show", "device-edge", "--state-dir", "/nonexistent/dir"])
    assert result.exit_code == 1 and "no running cluster found" in result.output


def test_status_shows_every_endpoint_healthy(cluster: RunningCluster) -> None:
    out = runner.invoke(app, ["status", "--state-dir", str(cluster.state.state_dir)]).output
    assert out.count(" ok ") == 7  # 3 nodes, 3 link proxies and the gateway
    assert "EMULATED speed ×0.25" in out


def test_config_validate(tmp_path: Path) -> None:
    good = runner.invoke(app, ["config", "default"])
    path = tmp_path / "spec.yaml"
    path.write_text(good.output)
    assert (
        "ok — 3 nodes, 3 links, 5 models"
        in runner.invoke(app, ["config", "validate", str(path)]).output
    )
    path.write_text(good.output.replace("port: 8702", "port: 99999"))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert "nodes[1].port: Input should be less than or equal to 65535" in result.output
    unknown = good.output.replace("gateway:\n", "gateway:\n  runs: {planner: oracle}\n", 1)
    path.write_text(unknown)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert "gateway.runs.planner: unknown planner 'oracle'" in " ".join(result.output.split())


def test_bad_files_given_to_commands_are_named_not_traced(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("x: [\n")
    missing = str(tmp_path / "none")
    cases = [
        (["cascade", "calibrate", "--data", missing], f"--data: {missing} does not exist"),
        (["cascade", "calibrate", "--data", missing, "-c", str(bad_yaml)], "not valid YAML"),
        (["bench", "compression", "--codecs", missing, "--tasks", "vqa"], f"no file at {missing}"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cascade [OPTIONS] COMMAND" in runner.invoke(app, ["cascade"]).output  # its help


def test_demo_asks_all_three_tiers() -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    body = result.output.split("asks every tier", 1)[1].split("the gateway places", 1)[0]
    for tier in ("device", "edge", "cloud", "device→edge"):
        assert f"│ {tier} " in body
    assert body.count("│ chat ") == 3
    assert body.count("│ photo ") == 3
    assert "│ split@" in body  # the device→edge split of the same photo
    assert "EMULATED link device-edge: 1MB/s" in result.output
    placed = result.output.split("the gateway places each request", 1)[1]
    assert placed.count("│ photo ") == 9  # three photos at each of three link speeds
    assert "chat@device/smollm2" in placed and "privacy: raw-stays-local" in placed
    assert "all in the cloud they would have cost" in result.output
