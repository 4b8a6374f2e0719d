"""`tierwise fl up`: a real Flower SuperLink and SuperNodes as processes on loopback,
each client's traffic through a tierwise link proxy, and one client that stops answering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fl_data_helper import make_colour_folders


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_deployment_trains_through_link_proxies_and_outlives_a_silent_client(
    tmp_path: Path,
) -> None:
    data = make_colour_folders(tmp_path / "data", train=20, test=10)
    report = tmp_path / "up.json"
    command = [
        sys.executable, "-m", "tierwise", "fl", "up",
        "--clients", "3", "--rounds", "3", "--model", "cnn", "--batch", "8",
        "--local-epochs", "2", "--compress", "q8", "--min-clients", "2",
        "--round-timeout", "25", "--uplink", "2MB/s", "--downlink", "4MB/s",
        "--data", str(data), "--report", str(report), "--inject-fault", "hang@2:2",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=380, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    result = json.loads(report.read_text())
    rounds = result["rounds"]
    assert len(rounds) == 3
    assert rounds[0]["accepted"] == 3
    # The silent client held round 2 only until the timeout; the other two carried it.
    assert rounds[1]["accepted"] == 2
    assert "partition 2: no reply" in rounds[1]["problems"]
    assert rounds[1]["simulated_s"] >= 25.0
    # Every client's bytes really crossed its own link proxy, and at least the bytes of
    # the messages the server counted (the proxy also sees HTTP framing and polling).
    proxied = {p["partition"]: p for p in result["proxy_bytes"]}
    first_round = {leg["partition"]: leg for leg in rounds[0]["legs"]}
    for partition in range(3):
        assert proxied[partition]["up"] >= first_round[partition]["up_bytes"] > 0
        assert proxied[partition]["down"] >= first_round[partition]["down_bytes"] > 0
    assert result["final_accuracy"] > result["initial_accuracy"]
    # Nothing is left running (exited processes awaiting a reaper do not count).
    table = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    flower = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr-clientapp")
    alive = [row for row in table.splitlines() if any(f in row for f in flower)]
    assert [row for row in alive if not row.strip().startswith("Z")] == []
