"""`tierwise fl run` on Flower's simulation engine, with faulty clients, end to end.

Runs the CLI as a real process (a real Ray, real ClientApps) on a tiny colour data set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fl_data_helper import make_colour_folders


def _fl_run(
    tmp_path: Path, *options: str, timeout: float = 280
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tierwise", "fl", "run", *options]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, check=False
    )


@pytest.mark.slow
def test_simulation_rejects_bad_updates_survives_a_crash_and_still_learns(tmp_path: Path) -> None:
    """Also FedProx under Flower's DP wrapper (tiny noise), clipping before compression."""
    data = make_colour_folders(tmp_path / "data")
    report = tmp_path / "run.json"
    done = _fl_run(
        tmp_path,
        "--clients", "3", "--rounds", "4", "--model", "cnn", "--lr", "0.05", "--batch", "8",
        "--local-epochs", "2", "--compress", "topk:0.05+q8", "--min-clients", "1",
        "--round-timeout", "150", "--strategy", "fedprox", "--proximal-mu", "0.1",
        "--dp", "--dp-noise-multiplier", "0.0001", "--dp-clipping-norm", "10",
        "--data", str(data), "--report", str(report),
        "--inject-fault", "garbage@1:2,shape@0:3,crash@2:3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    rounds = result["rounds"]
    assert [r["accepted"] for r in rounds] == [3, 2, 1, 3]
    assert any("partition 1: rejected" in p for p in rounds[1]["problems"])
    assert any("partition 0: rejected" in p for p in rounds[2]["problems"])
    assert any("partition 2: failed" in p and "injected fault" in p for p in rounds[2]["problems"])
    # Exact bytes: every accepted compressed update is far below the float32 model.
    first = rounds[0]
    dense = result["model_bytes_fp32"]
    assert 0 < first["up_bytes"] / 3 < dense / 10
    assert first["down_bytes"] / 3 > dense  # the global model goes down uncompressed
    # The straggler rule: the round lasted at least the slowest client's transfers.
    slowest = max(leg["up_bytes"] / 250_000 + leg["down_bytes"] / 500_000 for leg in first["legs"])
    assert first["simulated_s"] >= slowest
    # The colours are trivially separable: the federated model must have learnt them.
    assert result["final_accuracy"] > 0.8 > result["initial_accuracy"]
    assert Path(result["weights_file"]).is_file()
    assert result["settings"]["dp"] and result["settings"]["strategy"] == "fedprox"
    assert "final accuracy" in done.stdout


def test_bad_options_are_named(tmp_path: Path) -> None:
    done = _fl_run(tmp_path, "--compress", "gzip", "--data", str(tmp_path), timeout=60)
    assert done.returncode == 2
    assert "--compress" in done.stderr and "topk:F" in done.stderr
    done = _fl_run(tmp_path, "--strategy", "scaffold", timeout=60)
    assert done.returncode == 2 and "fedavg or fedprox" in done.stderr


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    done = _fl_run(tmp_path, "--data", str(tmp_path / "nowhere"), "--model", "cnn", timeout=60)
    assert done.returncode == 1
    assert "train/ and test/" in done.stderr


@pytest.mark.slow
def test_secure_aggregation_through_flower_secagg_plus(tmp_path: Path) -> None:
    data = make_colour_folders(tmp_path / "data", train=20, test=10)
    report = tmp_path / "secagg.json"
    done = _fl_run(
        tmp_path,
        "--clients", "3", "--rounds", "2", "--model", "cnn", "--lr", "0.05", "--batch", "8",
        "--local-epochs", "2", "--secagg", "--round-timeout", "150",
        "--data", str(data), "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["secure_aggregation"] == "SecAgg+ (Flower)"
    assert len(result["rounds"]) == 2
    first = result["rounds"][0]
    # Three protocol stages of keys and shares, then masked float vectors: more bytes per
    # client than the plain model, counted per node across every stage.
    assert len(first["legs"]) == 3
    assert all(leg["up_bytes"] > result["model_bytes_fp32"] for leg in first["legs"])
    assert result["final_accuracy"] > result["initial_accuracy"]


def test_secagg_refuses_compression(tmp_path: Path) -> None:
    done = _fl_run(tmp_path, "--secagg", "--compress", "q8", timeout=60)
    assert done.returncode == 2 and "compress none" in done.stderr
