"""The rounding floor: how many held-out inputs flip when only the weights are rounded.

A variant's disagreement with its original mixes two causes: what its method does wrong
(calibration, clipping, the int8 kernels) and what rounding the weights must do. This
takes the fp32 ONNX export, rounds only its weights (activations stay fp32, nothing is
calibrated), and measures top-1 agreement with the unrounded export:

- ``fp16`` and ``bf16``: every weight to the nearest 16-bit float;
- ``int8``: each output channel's weights to 255 levels spanning ±max|w| (round to
  nearest), the grid the int8 variants use; 127 levels (7 bits) where the CPU lacks
  VNNI, as the quantizer does there (or as ``weight_bits`` says).

Where int8 weights rounded to nearest flip an input, an int8 variant keeps it only by
choosing each weight's rounding from data (AdaRound) or by retraining with the rounding in
the loop (quantization-aware training, which needs the original's training data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tierwise.models.variant_file import read_card
from tierwise.optimize.onnx_export import run_graphs
from tierwise.optimize.onnx_quantize import WeightBits, default_weight_bits
from tierwise.optional import require

ROUNDINGS = ("fp16", "bf16", "int8")


def round_weights(graph: bytes, rounding: str, weight_bits: WeightBits | None = None) -> bytes:
    """``graph`` with every Conv/Gemm/MatMul weight rounded the way ``rounding`` says;
    int8 in ``weight_bits`` (default: the quantizer's on this CPU)."""
    onnx = require("onnx", "onnx", "the rounding floor")
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    axes = _weight_channel_axes(model)
    for tensor in model.graph.initializer:
        if tensor.name in axes:
            weights = numpy_helper.to_array(tensor).astype(np.float32)
            rounded = _round(weights, rounding, axes[tensor.name], weight_bits)
            tensor.CopyFrom(numpy_helper.from_array(rounded, tensor.name))
    data: bytes = model.SerializeToString()
    return data


def _weight_channel_axes(model: Any) -> dict[str, int]:
    """Each weight initializer's output-channel axis, read off the node that uses it."""
    initializers = {t.name for t in model.graph.initializer}
    axes = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in initializers:
            continue
        if node.op_type == "Conv":
            axes[node.input[1]] = 0
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axes[node.input[1]] = 0 if trans_b else 1
        elif node.op_type == "MatMul":
            axes[node.input[1]] = -1  # K×N (or batched …×K×N): outputs are the last axis
    return axes


def _round(
    weights: np.ndarray, rounding: str, axis: int, weight_bits: WeightBits | None
) -> np.ndarray:
    if rounding == "fp16":
        return weights.astype(np.float16).astype(np.float32)
    if rounding == "bf16":
        return _to_bf16(weights)
    if rounding == "int8":
        return _to_int8_grid(weights, axis, weight_bits or default_weight_bits())
    raise ValueError(f"rounding: expected one of {ROUNDINGS}, got {rounding!r}")


def _to_bf16(weights: np.ndarray) -> np.ndarray:
    """Keep the top 16 bits of each float32, rounding half to even on the rest."""
    bits = weights.view(np.uint32).astype(np.uint64)
    odd = (bits >> np.uint64(16)) & np.uint64(1)
    kept = (bits + np.uint64(0x7FFF) + odd) & np.uint64(0xFFFF0000)
    out: np.ndarray = kept.astype(np.uint32).view(np.float32)
    return out


def _to_int8_grid(weights: np.ndarray, axis: int, bits: int = 8) -> np.ndarray:
    """Each channel along ``axis`` to ``2^bits - 1`` levels spanning ±max|w| (symmetric,
    round to nearest)."""
    axis %= weights.ndim
    top = 2 ** (bits - 1) - 1
    others = tuple(i for i in range(weights.ndim) if i != axis)
    scale = np.abs(weights).max(axis=others, keepdims=True) / top
    scale[scale == 0] = 1.0
    levels = np.clip(np.round(weights / scale), -top, top)
    out: np.ndarray = (levels * scale).astype(np.float32)
    return out


def floor_rows(
    folder: Path, inputs: np.ndarray, sets: list[tuple[str, int, int, Any]]
) -> list[dict[str, Any]]:
    """Agreement with the fp32 export in ``folder`` per rounding, on each held-out set."""
    stages = range(len(read_card(folder).stages))
    graphs = [(folder / f"stage{i}.onnx").read_bytes() for i in stages]
    reference = run_graphs(graphs, inputs, batch=64).argmax(1)
    bits = default_weight_bits()
    rows = []
    for rounding in ROUNDINGS:
        rounded = [round_weights(g, rounding, bits) for g in graphs]
        top1 = run_graphs(rounded, inputs, batch=64).argmax(1)
        row: dict[str, Any] = {"rounding": rounding}
        if rounding == "int8":
            row["weight_bits"] = bits
        for name, start, end, _labels in sets:
            same = top1[start:end] == reference[start:end]
            row[f"agreement:{name}"] = float(same.mean())
            row[f"flipped:{name}"] = int((~same).sum())
        rows.append(row)
    return rows
