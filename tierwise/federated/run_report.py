"""A federated run's report: what it reached, what it moved, and its final model.

Both server flavours (plain and SecAgg+) end in the same report, so it lives apart from
either of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.federated.fl_config import FLSettings
from tierwise.federated.link_accounting import RoundRecord


def build_report(
    settings: FLSettings,
    rounds: list[RoundRecord],
    initial: dict[str, float],
    wall_s: float,
    weights: dict[str, np.ndarray],
) -> dict[str, Any]:
    parameters = sum(int(w.size) for w in weights.values())
    final = next((r.accuracy for r in reversed(rounds) if r.accuracy is not None), None)
    return {
        "settings": settings.model_dump(),
        "parameters": parameters,
        "model_bytes_fp32": 4 * parameters,
        "initial_accuracy": initial.get("accuracy"),
        "final_accuracy": final,
        "up_bytes": sum(r.up_bytes for r in rounds),
        "down_bytes": sum(r.down_bytes for r in rounds),
        "simulated_s": sum(r.simulated_s for r in rounds),
        "compute_s": sum(r.compute_s for r in rounds),
        "wall_s": wall_s,
        "rejected": sum(1 for r in rounds for p in r.problems if "rejected" in p),
        "rounds": [r.as_dict() for r in rounds],
    }


def write_report(where: str, report: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
    """The report as JSON and the final global model beside it, each written atomically."""
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_path = path.with_suffix(".weights.npz")
    tmp = model_path.with_name(model_path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **weights)  # type: ignore[arg-type]
    tmp.replace(model_path)
    report["weights_file"] = str(model_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)
