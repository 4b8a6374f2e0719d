"""int8 quantization of ONNX stage graphs with ONNX Runtime's quantizer.

- **static** (CNNs): weights signed 8-bit per output channel, activations unsigned 8-bit
  per tensor, ranges calibrated on real inputs. Each stage is calibrated on the fp32
  outputs of the stages before it, so errors do not compound into the calibration itself.
- **dynamic** (linear-heavy models): MatMul/Gemm weights in int8, activation ranges
  measured per batch at run time; no calibration data needed.

What decides speed and accuracy, as measured on EfficientNet-Lite0 (2 cores, batch 1):

- **Pre-processing.** The exporter writes each "same" padding as a small shape
  computation feeding a ``Pad``; ONNX Runtime's pre-processing folds it into the ``Conv``,
  so no quantize/dequantize pair lands around the padding.
- **Signed weights, operator format.** Unsigned per-channel weights have no fused int8
  convolution in ONNX Runtime: every conv ran dequantize → fp32 conv → quantize, 6×
  slower than fp32. Signed weights in the operator format (QLinearConv) run 1.6× faster
  than fp32 ONNX Runtime; the QDQ format ran no faster than fp32 here.
- **VNNI.** Without VNNI (or AMX), x86's u8×s8 kernels can saturate their 16-bit
  intermediate sums; there weights use 7 bits (``reduce_range``), which costs accuracy.
- ``Clip`` bounds arrive from the exporter as ``Constant`` nodes; the quantizer only
  folds ``Conv → Clip`` (so the conv's output range is the clip's 0..6) when the bounds
  are initializers, so they are moved there first.
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


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this x86 CPU has 8-bit dot-product instructions (VNNI or AMX)."""
    if not cpuinfo.is_file():
        return False
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def quantize_static_stages(
    graphs: list[bytes],
    calibration: np.ndarray,
    method: str = "MinMax",
    reduce_range: bool | None = None,
) -> list[bytes]:
    """Each stage in int8, calibrated on the fp32 chain's inputs to that stage.

    ``method`` is ONNX Runtime's calibration method: MinMax, Percentile or Entropy.
    ``reduce_range`` (7-bit weights) defaults to on where the CPU lacks VNNI."""
    q = _quantization()
    preprocess = require(
        "onnxruntime.quantization.shape_inference", "onnxruntime", "int8 quantization"
    ).quant_pre_process
    seven_bits = not cpu_has_vnni() if reduce_range is None else reduce_range
    out, inputs = [], np.ascontiguousarray(calibration, np.float32)
    with tempfile.TemporaryDirectory(prefix="tierwise-quant-") as tmp:
        for i, graph in enumerate(graphs):
            src = Path(tmp) / f"fp32-{i}.onnx"
            prepared, dst = Path(tmp) / f"prep-{i}.onnx", Path(tmp) / f"int8-{i}.onnx"
            src.write_bytes(constants_to_initializers(graph))
            preprocess(str(src), str(prepared))
            q.quantize_static(
                str(prepared),
                str(dst),
                _Batches(inputs),
                quant_format=q.QuantFormat.QOperator,
                per_channel=True,
                reduce_range=seven_bits,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=getattr(q.CalibrationMethod, method),
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
