"""int8 quantization of ONNX stage graphs with ONNX Runtime's quantizer.

- **static** (CNNs): weights per output channel, activations per tensor, ranges
  calibrated on real inputs. Each stage is calibrated on the fp32 outputs of the
  stages before it, so errors do not compound into the calibration itself.
- **dynamic** (linear-heavy models): MatMul/Gemm weights in int8, activation ranges
  measured per batch at run time; no calibration data needed.

Two preparations matter for accuracy:

- ``Clip`` bounds arrive from the exporter as ``Constant`` nodes; the quantizer only
  folds ``Conv → Clip`` (so the conv's output range is the clip's 0..6) when the bounds
  are initializers, so they are moved there first.
- Weights and activations are both unsigned 8-bit: on x86 CPUs without VNNI the
  u8×s8 kernels can saturate their 16-bit intermediate sums, which cost EfficientNet-Lite
  twice the error of u8×u8 in our measurements.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tierwise.models.onnx_variant import session
from tierwise.optional import require

Mode = Literal["static", "dynamic"]


def _quantization() -> Any:
    return require("onnxruntime.quantization", "onnxruntime", "int8 quantization")


def _onnx() -> Any:
    return require("onnx", "onnx", "int8 quantization")


def constants_to_initializers(graph: bytes) -> bytes:
    onnx = _onnx()
    model = onnx.load_from_string(graph)
    kept = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1:
            tensor = onnx.helper.get_attribute_value(node.attribute[0])
            if isinstance(tensor, onnx.TensorProto):
                tensor.name = node.output[0]
                model.graph.initializer.append(tensor)
                continue
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    data: bytes = model.SerializeToString()
    return data


class _Batches:
    """ONNX Runtime's calibration reader protocol over an array of inputs, one at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._rows: Iterator[np.ndarray] = iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {"x": np.ascontiguousarray(row[None], np.float32)}

    def rewind(self) -> None:  # the protocol has it; one pass is all we need
        pass


def depthwise_convs(graph: bytes) -> list[str]:
    """Names of the grouped (depthwise) convolutions in a graph."""
    onnx = _onnx()
    model = onnx.load_from_string(graph)
    names = []
    for node in model.graph.node:
        groups = [a.i for a in node.attribute if a.name == "group"]
        if node.op_type == "Conv" and groups and groups[0] > 1:
            names.append(node.name)
    return names


def quantize_static_stages(
    graphs: list[bytes],
    calibration: np.ndarray,
    method: str = "MinMax",
    keep_depthwise: bool = False,
) -> list[bytes]:
    """Each stage in int8, calibrated on the fp32 chain's inputs to that stage.

    ``method`` is ONNX Runtime's calibration method: MinMax, Percentile or Entropy.
    ``keep_depthwise`` leaves depthwise convolutions in fp32: they carry little of the
    compute but most of the error, as each channel's range differs wildly."""
    q = _quantization()
    out, inputs = [], np.ascontiguousarray(calibration, np.float32)
    with tempfile.TemporaryDirectory(prefix="tierwise-quant-") as tmp:
        for i, graph in enumerate(graphs):
            src, dst = Path(tmp) / f"fp32-{i}.onnx", Path(tmp) / f"int8-{i}.onnx"
            src.write_bytes(constants_to_initializers(graph))
            exclude = depthwise_convs(graph) if keep_depthwise else []
            q.quantize_static(
                str(src),
                str(dst),
                _Batches(inputs),
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QUInt8,
                calibrate_method=getattr(q.CalibrationMethod, method),
                nodes_to_exclude=exclude,
            )
            out.append(dst.read_bytes())
            inputs = session(graph).run(None, {"x": inputs})[0]
    return out


def quantize_dynamic_stages(graphs: list[bytes]) -> list[bytes]:
    """Each stage's MatMul/Gemm weights in int8; activations quantized at run time."""
    q = _quantization()
    out = []
    with tempfile.TemporaryDirectory(prefix="tierwise-quant-") as tmp:
        for i, graph in enumerate(graphs):
            src, dst = Path(tmp) / f"fp32-{i}.onnx", Path(tmp) / f"int8-{i}.onnx"
            src.write_bytes(graph)
            q.quantize_dynamic(
                str(src),
                str(dst),
                op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=q.QuantType.QInt8,
            )
            out.append(dst.read_bytes())
    return out
