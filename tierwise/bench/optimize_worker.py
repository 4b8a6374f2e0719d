"""One model measured in a process of its own, so its peak memory is its own.

``python -m tierwise.bench.optimize_worker SPEC_JSON`` prints one JSON line: latency
samples at batch 1 and 8, top-1 predictions on the held-out inputs with the lead of the
top class over the runner-up, and the process's peak resident memory. Inputs arrive as
a ``.npy`` file (never pickle).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _runner(spec: dict[str, Any]) -> Any:
    """A function batch → logits for what ``spec`` names (nothing, for the empty baseline)."""
    threads = int(spec["threads"])
    if spec["kind"] == "empty":
        import onnxruntime  # noqa: F401  the libraries every real worker loads
        import torch

        return None
    if spec["kind"] == "onnx":
        from tierwise.models.onnx_variant import OnnxVariant

        variant = OnnxVariant(spec["name"], Path(spec["path"]), threads)
        return variant.run_all
    import torch

    torch.set_num_threads(threads)
    from tierwise.optimize.sources import load_source

    net = load_source(spec["path"], spec["name"]).net.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = net(torch.from_numpy(x)).numpy()
        return out

    return run


def top_margins(logits: np.ndarray) -> np.ndarray:
    """How far the top class's softmax probability leads the runner-up's, per row."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.sort(p, axis=1)[:, -2:]
    margins: np.ndarray = top2[:, 1] - top2[:, 0]
    return margins


def _times(run: Any, x: np.ndarray, repeats: int) -> list[float]:
    run(x)  # warm-up: first calls allocate and pick kernels
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(x)
        samples.append((time.perf_counter() - started) * 1e3)
    return samples


def _peak_rss_mb() -> float:
    """This process's own peak resident memory. ``ru_maxrss`` would not do: Linux carries
    it over from the parent across fork and exec, so every worker showed the bench's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    spec = json.loads(sys.argv[1])
    run = _runner(spec)
    result: dict[str, Any] = {}
    if run is not None:
        inputs = np.load(spec["inputs"], allow_pickle=False)
        logits = np.concatenate([run(inputs[i : i + 50]) for i in range(0, len(inputs), 50)])
        result["predictions"] = [int(p) for p in logits.argmax(1)]
        result["margins"] = [float(m) for m in top_margins(logits)]
        result["batch1_ms"] = _times(run, inputs[:1], int(spec["repeats"]))
        result["batch8_ms"] = _times(run, inputs[:8], max(3, int(spec["repeats"]) // 4))
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
