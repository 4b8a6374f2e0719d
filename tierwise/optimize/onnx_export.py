"""Export a staged torch network to one ONNX graph per stage, and check ONNX Runtime agrees.

Each graph has one input ``x`` and one output ``y`` with a free batch dimension, so a
node can run any range of stages and a split plan can cut between any two of them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from tierwise.errors import InputError
from tierwise.models.onnx_variant import session

OPSET = 17
#: ONNX Runtime and PyTorch differ in summation order; outputs must agree to this
#: fraction of the reference's largest magnitude.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    max_abs_diff: float
    relative_diff: float
    top1_agreement: float


def export_stage(stage: nn.Module, example: torch.Tensor) -> bytes:
    """One stage as an ONNX graph (the TorchScript exporter: no extra dependencies)."""
    buffer = io.BytesIO()
    stage.eval()
    try:
        with warnings.catch_warnings():
            # The exporter warns about its own deprecation and about shape inference
            # details that do not affect the graph; the check below is what counts.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                stage,
                (example,),
                cast(Any, buffer),  # the exporter writes to file objects too
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean "cannot export"
        raise InputError(f"the ONNX exporter cannot handle {type(stage).__name__}: {exc}") from exc
    return buffer.getvalue()


def export_stages(net: nn.Sequential, input_shape: tuple[int, ...]) -> list[bytes]:
    """Every stage of ``net``, each traced on the previous stage's output."""
    x = torch.zeros((1, *input_shape))
    graphs = []
    with torch.inference_mode():
        for stage in net:
            graphs.append(export_stage(stage, x))
            x = stage(x)
    return graphs


def graph_params(graph: bytes) -> int:
    """Weights in a graph: the elements of its floating-point initializers."""
    import onnx

    model = onnx.load_from_string(graph)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)
    return sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in floats and t.dims
    )


def run_graphs(graphs: list[bytes], x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The stage chain's output for ``x``, ``batch`` rows at a time (all at once if None);
    each stage's session is made once, not per batch."""
    sessions = [session(graph) for graph in graphs]
    step = batch or max(len(x), 1)
    outs = []
    for i in range(0, max(len(x), 1), step):  # an empty x still runs once, as before
        out = np.ascontiguousarray(x[i : i + step], dtype=np.float32)
        for stage in sessions:
            out = stage.run(None, {"x": out})[0]
        outs.append(out)
    return np.concatenate(outs)


def check_export(net: nn.Sequential, graphs: list[bytes], sample: np.ndarray) -> ExportCheck:
    """Compare the ONNX chain with the torch network on ``sample``; raise if they differ."""
    with torch.inference_mode():
        reference = net(torch.from_numpy(np.ascontiguousarray(sample, np.float32))).numpy()
    got = run_graphs(graphs, sample)
    diff = float(np.abs(got - reference).max())
    relative = diff / max(float(np.abs(reference).max()), 1e-12)
    agreement = float((got.argmax(1) == reference.argmax(1)).mean())
    if relative > TOLERANCE:
        raise InputError(
            f"ONNX Runtime output differs from PyTorch by {relative:.2e} of the output's scale "
            f"(max |diff| {diff:.3g}); expected at most {TOLERANCE:.0e}"
        )
    return ExportCheck(diff, relative, agreement)
