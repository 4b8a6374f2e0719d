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
  slower than fp32. Signed weights in the operator format (QLinearConv) run 1.5× faster
  than fp32 ONNX Runtime (4.6 → 3.1 ms). The QDQ format runs as fast once pre-processed,
  but its files are 5% larger.
- **Bias correction.** Rounded weights shift each conv's mean output; each stage is
  quantized, its conv biases corrected for the shift, and quantized again (see
  :func:`correct_biases`): top-1 agreement on the photos 77% → 83%.
- **VNNI.** Without VNNI (or AMX), x86's u8×s8 kernels add pairs of products in 16 bits,
  which 8-bit weights can saturate; there weights use 7 bits (``reduce_range``), which
  costs accuracy. The width follows the CPU unless the caller names it
  (:func:`default_weight_bits`), and the variant's card records it.
- ``Clip`` bounds arrive from the exporter as ``Constant`` nodes; the quantizer only
  folds ``Conv → Clip`` (so the conv's output range is the clip's 0..6) when the bounds
  are initializers, so they are moved there first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tierwise.models.onnx_variant import session
from tierwise.optional import require

Mode = Literal["static", "dynamic"]
#: static int8's weight width: 8, or 7 for CPUs whose int8 kernels could saturate on 8
WeightBits = Literal[7, 8]


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


def cpu_has_vnni(
    cpuinfo: Path = Path("/proc/cpuinfo"), features: Mapping[str, bool] | None = None
) -> bool:
    """Whether this x86 CPU has 8-bit dot-product instructions (VNNI or AMX).

    AVX512-VNNI is read from numpy's own CPUID probe (``features``), which sees what this
    process can run: under an emulator, or an OS that leaves AVX-512 off, /proc/cpuinfo
    shows the host's flags instead. numpy does not probe AVX-VNNI or AMX, so those come
    from /proc/cpuinfo."""
    features = _numpy_cpu_features() if features is None else features
    wanted = {"avx_vnni", "amx_int8"}
    if "AVX512VNNI" in features:
        if features["AVX512VNNI"]:
            return True
    else:
        wanted.add("avx512_vnni")
    return bool(_cpu_flags(cpuinfo) & wanted)


def default_weight_bits() -> WeightBits:
    """The weight width this CPU's int8 kernels run exactly: 8 with VNNI, else 7."""
    return 8 if cpu_has_vnni() else 7


def _numpy_cpu_features() -> Mapping[str, bool]:
    import importlib

    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # 2.x, 1.x
        try:
            found: Mapping[str, bool] = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return found
    return {}


def _cpu_flags(cpuinfo: Path) -> set[str]:
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def quantize_static_stages(
    graphs: list[bytes],
    calibration: np.ndarray,
    method: str = "MinMax",
    weight_bits: WeightBits | None = None,
    bias_correction: bool = True,
) -> list[bytes]:
    """Each stage in int8, calibrated on the fp32 chain's inputs to that stage.

    ``method`` is ONNX Runtime's calibration method: MinMax, Percentile or Entropy.
    ``weight_bits`` defaults to this CPU's (:func:`default_weight_bits`).
    ``bias_correction`` quantizes twice: see :func:`correct_biases`."""
    preprocess = require(
        "onnxruntime.quantization.shape_inference", "onnxruntime", "int8 quantization"
    ).quant_pre_process
    seven_bits = (weight_bits or default_weight_bits()) == 7
    out, inputs = [], np.ascontiguousarray(calibration, np.float32)
    with tempfile.TemporaryDirectory(prefix="tierwise-quant-") as tmp:
        for i, graph in enumerate(graphs):
            src = Path(tmp) / f"fp32-{i}.onnx"
            prepared, dst = Path(tmp) / f"prep-{i}.onnx", Path(tmp) / f"int8-{i}.onnx"
            src.write_bytes(constants_to_initializers(graph))
            preprocess(str(src), str(prepared))
            options = {"reduce_range": seven_bits, "method": method}
            int8 = _quantize_stage(prepared, dst, inputs, options)
            if bias_correction:
                prepared.write_bytes(correct_biases(prepared.read_bytes(), int8, inputs))
                int8 = _quantize_stage(prepared, dst, inputs, options)
            out.append(int8)
            inputs = session(graph).run(None, {"x": inputs})[0]
    return out


def _quantize_stage(src: Path, dst: Path, inputs: np.ndarray, options: dict[str, Any]) -> bytes:
    q = _quantization()
    q.quantize_static(
        str(src),
        str(dst),
        _Batches(inputs),
        quant_format=q.QuantFormat.QOperator,
        per_channel=True,
        reduce_range=options["reduce_range"],
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=getattr(q.CalibrationMethod, options["method"]),
    )
    return dst.read_bytes()


def correct_biases(fp32: bytes, int8: bytes, inputs: np.ndarray) -> bytes:
    """The fp32 graph with each conv's bias moved against its weights' rounding error.

    Rounding a conv's weights to int8 shifts its output by (W_q - W)·E[x] on average,
    and ReLU6 inputs are never negative, so the shifts do not cancel: on EfficientNet-
    Lite0's first stage the output moved by +0.16 on average. Subtracting the expected
    shift from the bias (the "bias correction" of Nagel et al., 2019, with E[x] measured
    on the calibration images) removes it; quantizing again then rounds the same weights
    and carries the corrected bias."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load_from_string(fp32)
    rounded = _rounded_conv_weights(onnx.load_from_string(int8))
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    means = _channel_means(model, sorted({n.input[0] for n in convs}), inputs)
    weights = {t.name: t for t in model.graph.initializer}
    for conv in convs:
        if conv.name not in rounded or conv.input[2] not in weights:
            continue
        w = numpy_helper.to_array(weights[conv.input[1]]).astype(np.float64)
        error = (rounded[conv.name] - w).sum(axis=(2, 3))  # out × in/groups
        mean_x = means[conv.input[0]]
        shift = error @ mean_x if error.shape[1] == len(mean_x) else error[:, 0] * mean_x
        bias = weights[conv.input[2]]
        fixed = numpy_helper.to_array(bias).astype(np.float64) - shift
        bias.CopyFrom(numpy_helper.from_array(fixed.astype(np.float32), bias.name))
    data: bytes = model.SerializeToString()
    return data


def _rounded_conv_weights(int8: Any) -> dict[str, np.ndarray]:
    """Each quantized conv's weights as int8 gave them back (int × scale), by fp32 name."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    out = {}
    for node in int8.graph.node:
        if node.op_type == "QLinearConv" and node.name.endswith("_quant"):
            codes, scale = init[node.input[3]], init[node.input[4]].astype(np.float64)
            out[node.name.removesuffix("_quant")] = codes * scale.reshape(-1, 1, 1, 1)
    return out


def _channel_means(model: Any, tensors: list[str], inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Each named tensor's mean per channel over the inputs (batches, height, width)."""
    onnx = _onnx()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = [t for t in tensors if t != "x"]
    present = {o.name for o in probe.graph.output}
    for name in outputs:
        if name not in present:
            info = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            probe.graph.output.append(info)
    run = session(probe.SerializeToString()) if outputs else None
    sums: dict[str, np.ndarray] = {}
    for i in range(0, len(inputs), 32):
        batch = inputs[i : i + 32]
        found = run.run(outputs, {"x": batch}) if run is not None else []
        values = dict(zip(outputs, found, strict=True))
        values["x"] = batch
        for name in tensors:
            part = values[name].astype(np.float64).mean(axis=(2, 3)).sum(axis=0)
            sums[name] = sums.get(name, 0) + part
    return {name: total / len(inputs) for name, total in sums.items()}


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
