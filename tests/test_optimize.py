"""`tierwise optimize`: ONNX export, int8, pruning, distillation, variants and their plans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from tests.synthetic_cifar import synthetic_dataset, trained_net
from tierwise.cli import app
from tierwise.config import Policy, default_spec
from tierwise.datasets.cifar10 import Cifar10
from tierwise.datasets.photos import photo_set
from tierwise.errors import InputError
from tierwise.models.cifar_input import normalise
from tierwise.models.onnx_variant import OnnxVariant
from tierwise.models.registry import load_node_models
from tierwise.models.variant_file import (
    StageFile,
    VariantCard,
    find_variants,
    read_card,
    write_variant,
)
from tierwise.optimize.onnx_quantize import WeightBits, cpu_has_vnni
from tierwise.optimize.optimize_job import HeldOut, OptimizeOptions, run_optimize
from tierwise.optimize.sources import cifar_source
from tierwise.placement.cost import LiveState, build_vision_table
from tierwise.placement.planner import decide
from tierwise.placement.plans import variant_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric

runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def data() -> Cifar10:
    return synthetic_dataset()


@pytest.fixture(scope="module")
def net_path(tmp_path_factory: pytest.TempPathFactory, data: Cifar10) -> Path:
    return trained_net(tmp_path_factory.mktemp("net"), data)


def _held_out(data: Cifar10) -> list[HeldOut]:
    return [HeldOut("synthetic-test", normalise(data.x_test), data.y_test)]


def _torch_logits(path: Path, x: np.ndarray) -> np.ndarray:
    return _logits(cifar_source(path, "cifar10-net").net, x)


def _logits(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = net(torch.from_numpy(x)).numpy()
    return out


# ---------------------------------------------------------------- export and serving


def test_export_serves_stage_by_stage_like_the_torch_network(
    net_path: Path, data: Cifar10, tmp_path: Path
) -> None:
    source = cifar_source(net_path, "cifar10-net")
    options = OptimizeOptions(name="fp32")
    outcome = run_optimize(source, options, tmp_path, _held_out(data), None, None, None)
    assert outcome.card.measured["agreement"] == 1.0
    variant = OnnxVariant("cifar10-net:fp32", outcome.folder)
    x = normalise(data.x_test[:8])
    want = _torch_logits(net_path, x)
    np.testing.assert_allclose(variant.run_all(x), want, rtol=1e-4, atol=1e-4)
    # Any split of the stages composes to the same answer, as split plans need.
    head = variant.run_stages(x, 0, 2)
    np.testing.assert_allclose(variant.run_stages(head, 2, 5), want, rtol=1e-4, atol=1e-4)
    assert [s.output_shape for s in variant.stages][-1] == (10,)
    assert variant.labels()[0] == "airplane"


@pytest.mark.parametrize("bits", [7, 8])
def test_static_int8_is_smaller_and_keeps_the_answers(
    net_path: Path, data: Cifar10, tmp_path: Path, bits: WeightBits
) -> None:
    """Both weight widths, whatever this CPU's default (8 with VNNI, else 7)."""
    source = cifar_source(net_path, "cifar10-net")
    calibration = normalise(data.x_train[:64])
    fp32 = run_optimize(
        source, OptimizeOptions(name="fp32"), tmp_path, _held_out(data), None, None, None
    )
    int8 = run_optimize(
        source,
        OptimizeOptions(name="int8", quantize="static", weight_bits=bits),
        tmp_path,
        _held_out(data),
        None,
        calibration,
        None,
    )
    size = {
        v.card.name: sum(p.stat().st_size for p in v.folder.glob("*.onnx")) for v in (fp32, int8)
    }
    assert size["int8"] < size["fp32"] / 2.5
    assert int8.card.measured["agreement"] >= 0.9
    assert int8.card.steps[-1] == {
        "step": "quantize",
        "dtype": "int8",
        "mode": "static",
        "weight_bits": bits,
        "bias_correction": True,
    }
    # Fused int8 convolutions (signed weights, operator format), not dequantize → fp32 conv.
    graphs = [onnx.load(f) for f in sorted(int8.folder.glob("*.onnx"))]
    ops = {n.op_type for g in graphs for n in g.graph.node}
    assert "QLinearConv" in ops
    assert "Conv" not in ops
    # The width asked for is the width written: 8-bit weights use the whole signed range.
    top = max(int(np.abs(codes).max()) for g in graphs for codes in _conv_codes(g).values())
    assert top == (127 if bits == 8 else 64)


def _conv_codes(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Each QLinearConv's int8 weight codes, by node name."""
    from onnx import numpy_helper

    init = {t.name: t for t in graph.graph.initializer}
    return {
        n.name: numpy_helper.to_array(init[n.input[3]])
        for n in graph.graph.node
        if n.op_type == "QLinearConv"
    }


def test_vnni_is_read_from_the_cpus_own_probe_then_its_flags(tmp_path: Path) -> None:
    with_vnni, without = tmp_path / "a", tmp_path / "b"
    with_vnni.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    without.write_text("processor : 0\nflags : fpu sse2 avx2\n")
    amx = tmp_path / "c"
    amx.write_text("processor : 0\nflags : fpu sse2 avx2 amx_tile amx_int8\n")
    # numpy's CPUID probe decides AVX512-VNNI: an emulated CPU without it runs on a host
    # whose /proc/cpuinfo has it, and the kernels see what the probe sees.
    assert cpu_has_vnni(without, {"AVX512VNNI": True})
    assert not cpu_has_vnni(with_vnni, {"AVX512VNNI": False})
    # AVX-VNNI and AMX are not in numpy's probe: the flags tell.
    assert cpu_has_vnni(amx, {"AVX512VNNI": False})
    # A numpy without the probe falls back to the flags.
    assert cpu_has_vnni(with_vnni, {})
    assert not cpu_has_vnni(without, {})
    assert not cpu_has_vnni(tmp_path / "missing", {})


def test_pruning_removes_channels_and_fine_tuning_recovers(
    net_path: Path, data: Cifar10, tmp_path: Path
) -> None:
    source = cifar_source(net_path, "cifar10-net")
    before = source.params
    options = OptimizeOptions(name="pruned50", prune=0.5, epochs=4, lr=0.05)
    outcome = run_optimize(source, options, tmp_path, _held_out(data), data, None, None)
    prune_step = next(s for s in outcome.card.steps if s["step"] == "prune")
    assert prune_step["params_before"] == before
    assert prune_step["params_after"] < before * 0.4
    assert outcome.card.measured["params"] < before * 0.4
    # Fewer channels really: the stage shapes in the card shrank.
    assert outcome.card.stages[1].output_shape[0] < 16  # width 8: 16 channels before
    assert outcome.card.measured["accuracy"] >= outcome.card.measured["reference_accuracy"] - 0.2


def test_a_gpu_torch_cannot_see_is_refused_before_any_work(net_path: Path, tmp_path: Path) -> None:
    args = ["optimize", "cifar-net:w4", "--distill", str(net_path), "--device", "cuda:99"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "--device: cuda:99 was asked for, but torch" in result.output
    assert not any(tmp_path.iterdir())


def test_distilled_student_is_smaller_and_learns_from_the_teacher(
    net_path: Path, data: Cifar10, tmp_path: Path
) -> None:
    teacher = cifar_source(net_path, "cifar10-net")
    options = OptimizeOptions(
        name="student-w4", student_width=4, epochs=10, lr=0.1, precision="bf16"
    )
    outcome = run_optimize(teacher, options, tmp_path, _held_out(data), data, None, None)
    assert outcome.card.base == "cifar10-net"
    distill = outcome.card.steps[0]
    assert (distill["step"], distill["student_width"], distill["epochs"]) == ("distill", 4, 10)
    assert 0.4 <= distill["student_test_accuracy"] <= 1
    assert outcome.card.measured["params"] < teacher.params / 3
    # 40 steps of a width-4 network: far from done, but well past chance (10%).
    assert outcome.card.measured["accuracy"] >= 0.4
    assert outcome.card.measured["agreement"] >= 0.4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_distillation_on_unlabelled_images_recovers_a_pruned_network(
    net_path: Path, data: Cifar10, precision: str
) -> None:
    """The path that recovers a pruned EfficientNet-Lite, on our tiny network instead."""
    from tierwise.optimize.distill import DistillConfig, distill_on_images
    from tierwise.optimize.prune import prune_channels

    teacher = cifar_source(net_path, "cifar10-net").net.eval()
    student = cifar_source(net_path, "cifar10-net").net
    prune_channels(student, (3, 32, 32), 0.5)
    images, held_out = normalise(data.x_train[:256]), normalise(data.x_test[:200])
    want = _logits(teacher, held_out).argmax(1)
    before = float((_logits(student.eval(), held_out).argmax(1) == want).mean())
    config = DistillConfig(epochs=3, lr=3e-3, precision=precision)  # type: ignore[arg-type]
    history = distill_on_images(student, teacher, images, config)
    after = float((_logits(student, held_out).argmax(1) == want).mean())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert after > before


def test_a_rerun_resumes_from_the_checkpoint(net_path: Path, data: Cifar10, tmp_path: Path) -> None:
    options = OptimizeOptions(name="pruned50", prune=0.5, epochs=2, lr=0.02)
    first = run_optimize(
        cifar_source(net_path, "n"), options, tmp_path, _held_out(data), data, None, None
    )
    # No data now: had the fine-tune not been checkpointed, the rerun could not prune.
    again = run_optimize(
        cifar_source(net_path, "n"), options, tmp_path, _held_out(data), None, None, None
    )
    assert again.card.stages == first.card.stages
    assert again.card.measured["agreement"] == first.card.measured["agreement"]


def test_a_changed_source_starts_afresh_instead_of_resuming(
    net_path: Path, data: Cifar10, tmp_path: Path
) -> None:
    options = OptimizeOptions(name="fp32")
    run_optimize(cifar_source(net_path, "n"), options, tmp_path, _held_out(data), None, None, None)
    retrained = cifar_source(net_path, "n")
    classifier = next(m for m in retrained.net[-1].modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        classifier.weight.mul_(-1)  # same shapes, other weights: another network
    again = run_optimize(retrained, options, tmp_path, _held_out(data), None, None, None)
    variant = OnnxVariant("n:fp32", again.folder, threads=1)
    x = normalise(data.x_test[:4])
    np.testing.assert_allclose(
        variant.run_stages(x, 0, len(variant.stages)), _logits(retrained.net, x), atol=1e-4
    )
    assert len(list((tmp_path / "n" / ".work" / "fp32").glob("*.json"))) == 2


# ---------------------------------------------------------------- the variant folder


def _card(name: str, base: str = "cifar10-net") -> VariantCard:
    stage = StageFile("only", (3, 32, 32), (10,), 30)
    return VariantCard(name, base, "cifar", 32, [stage], measured={"agreement": 0.9})


def test_variant_writes_are_atomic_and_found_by_base(tmp_path: Path) -> None:
    write_variant(tmp_path, _card("a"), [b"graph-a"])
    write_variant(tmp_path, _card("b", base="other"), [b"graph-b"])
    (tmp_path / "cifar10-net" / ".c.writing-1").mkdir()  # a write that died half-way
    (tmp_path / "cifar10-net" / "d").mkdir()  # a folder without a card
    found = find_variants(tmp_path, "cifar10-net")
    assert [card.name for _, card in found] == ["a"]
    # Rewriting replaces the old variant whole.
    write_variant(tmp_path, _card("a"), [b"graph-a2"])
    assert (tmp_path / "cifar10-net" / "a" / "stage0.onnx").read_bytes() == b"graph-a2"
    assert not [p for p in (tmp_path / "cifar10-net").iterdir() if "retired" in p.name]
    # Two models' variants of one name live side by side.
    assert (tmp_path / "other" / "b" / "variant.json").is_file()


def test_a_tampered_or_foreign_variant_is_refused(tmp_path: Path) -> None:
    folder = write_variant(tmp_path, _card("a"), [b"graph"])
    (folder / "stage0.onnx").write_bytes(b"other")
    with pytest.raises(InputError, match="digest"):
        OnnxVariant("x", folder)
    body = json.loads((folder / "variant.json").read_text())
    body["format"] = "something/9"
    (folder / "variant.json").write_text(json.dumps(body))
    with pytest.raises(InputError, match="expected 'tierwise-variant/1'"):
        read_card(folder)
    with pytest.raises(InputError, match="not a model variant"):
        read_card(tmp_path)


# ---------------------------------------------------------------- bad input, before any work


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune", "1.5"], "--prune: expected a fraction of channels in (0, 1), got 1.5"),
        (["--prune", "0"], "--prune: expected a fraction of channels in (0, 1), got 0.0"),
        ([], "nothing to do"),
        (["--quantize", "int8"], "--calibration: static int8 quantization needs a folder"),
        (["--quantize", "int4"], "--quantize: expected int8, int8-dynamic or none"),
        (["--export", "tflite"], "--export: expected onnx"),
        (["--export", "onnx", "--device", "gpu"], "--device: expected cpu, cuda or cuda:N"),
        (["--export", "onnx", "--precision", "fp16"], "--precision: expected fp32 or bf16"),
        (["--quantize", "int8-dynamic", "--weight-bits", "7"], "--weight-bits: only static"),
        (
            ["--quantize", "int8", "--calibration", "unread", "--weight-bits", "6"],
            "--weight-bits: expected 7 or 8, got 6",
        ),
    ],
)
def test_bad_options_fail_before_any_work(
    net_path: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["optimize", str(net_path), *args, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output
    assert not any(tmp_path.iterdir())


def test_a_calibration_folder_without_images_is_refused(net_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    args = ["optimize", str(net_path), "--quantize", "int8", "--calibration", str(empty)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "v")])
    assert result.exit_code == 1
    assert "has no images" in result.output
    assert not (tmp_path / "v").exists()


def test_students_need_a_teacher_and_must_be_smaller(net_path: Path, tmp_path: Path) -> None:
    out = ["--out", str(tmp_path)]
    lone = runner.invoke(app, ["optimize", "cifar-net:w4", *out])
    assert "needs --distill TEACHER" in lone.output
    big = runner.invoke(app, ["optimize", "cifar-net:w64", "--distill", str(net_path), *out])
    assert "not fewer than the teacher's" in big.output
    lite = runner.invoke(app, ["optimize", "cifar-net:w4", "--distill", "efficientnet-lite0"])
    assert "ImageNet-scale images" in lite.output
    wrong = runner.invoke(app, ["optimize", str(tmp_path / "none.npz"), "--export", "onnx"])
    assert "no such file" in wrong.output


def test_cli_writes_an_int8_variant_measured_on_photos(net_path: Path, tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for name, image in photo_set(8):
        image.save(calib / f"{name}.jpg")
    out = tmp_path / "variants"
    args = ["optimize", str(net_path), "--quantize", "int8", "--calibration", str(calib)]
    result = runner.invoke(app, [*args, "--out", str(out), "--data", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    card = read_card(out / "cifar10-net" / "int8")
    assert card.measured["n"] == len(photo_set())  # no CIFAR-10 here: the photos, shrunk
    assert "cifar10-net:int8: agreement" in result.output
    # Not a terminal: each phase is logged as lines, since a bar would show only at the end.
    assert "quantizing (static): 0/1" in result.output
    assert "quantizing (static): 1/1" in result.output


# ---------------------------------------------------------------- nodes and the planner


def test_nodes_serve_the_variants_of_models_they_host(net_path: Path, tmp_path: Path) -> None:
    source = cifar_source(net_path, "cifar10-net")
    held = [HeldOut("photos", np.concatenate([source.preprocess(i) for _, i in photo_set(4)]))]
    run_optimize(source, OptimizeOptions(name="fp32"), tmp_path, held, None, None, None)
    spec = default_spec().model_dump(mode="python")
    spec["models"]["cifar10-net"] = {"kind": "cifar-net", "path": str(net_path)}
    spec["nodes"][0]["models"] = ["cifar10-net"]
    spec["variants_dir"] = str(tmp_path)
    parsed = type(default_spec()).model_validate(spec)
    models = load_node_models(parsed, parsed.nodes[0], {}, threads=1)
    try:
        assert models.kinds["cifar10-net:fp32"] == "onnx-variant"
        assert models.variants["cifar10-net:fp32"].base == "cifar10-net"
        x = held[0].x[:2]
        np.testing.assert_allclose(
            models.staged_model("cifar10-net:fp32").run_all(x),
            models.staged_model("cifar10-net").run_all(x),
            rtol=1e-4,
            atol=1e-4,
        )
    finally:
        models.close()


def test_min_quality_picks_the_variant_only_when_it_is_good_enough() -> None:
    spec = default_spec()
    base, variant, n = "efficientnet-lite0", "efficientnet-lite0:int8", 6
    plans = vision_plans(spec, base, n, "device", feature_codecs=())
    plans += variant_plans(spec, base, variant, ["device", "edge"], n, "device")
    ids = {p.id for p in plans}
    assert {"int8:local@device", "int8:edge/jpeg90", "int8:edge/png"} <= ids
    profiles = Profiles()
    for node, ms in (("device", 40.0), ("edge", 10.0), ("cloud", 10.0)):
        for i in range(n):
            profiles.set(node, base, stage_metric(i), ms)
            profiles.set(node, variant, stage_metric(i), ms / 4)  # four times faster
    for codec, size in (("jpeg90", 20_000.0), ("png", 90_000.0)):
        for what, value in (("bytes", size), ("ms", 2.0), ("agreement", 0.99)):
            profiles.set(ANY_NODE, base, codec_metric(codec, 0, what), value)
    profiles.set(ANY_NODE, base, "out:bytes", 4000.0)
    profiles.set(ANY_NODE, variant, "model:agreement", 0.95)
    # accuracies on labelled photos: the base's, and the variant's whole and after JPEG
    profiles.set(ANY_NODE, base, "model:accuracy", 0.99)
    profiles.set(ANY_NODE, variant, "model:accuracy", 0.95)
    for codec in ("jpeg90", "png"):
        profiles.set(ANY_NODE, base, codec_metric(codec, 0, "accuracy"), 0.99)
        profiles.set(ANY_NODE, variant, codec_metric(codec, 0, "accuracy"), 0.94)
    table = build_vision_table(spec, plans, profiles)
    quality = dict(zip([p.id for p in plans], table.quality, strict=True))
    agreement = dict(zip([p.id for p in plans], table.agreement, strict=True))
    assert quality["int8:local@device"] == pytest.approx(0.95)
    assert quality["int8:edge/jpeg90"] == pytest.approx(0.94)
    assert agreement["int8:edge/jpeg90"] == pytest.approx(0.95 * 0.99)
    links, nodes = len(table.links), len(table.nodes)
    live = LiveState(
        np.full(links, 250e3),
        np.full(links, 0.02),
        np.ones(links, bool),
        np.zeros(nodes),
        np.ones(nodes, bool),
    )
    loose = decide(table, live, Policy(min_quality=0.9, quality="any"), True)
    strict = decide(table, live, Policy(min_quality=0.99), True)
    assert not plans[decide(table, live, Policy(), True).best].id.startswith("int8:")
    assert plans[loose.best].id == "int8:local@device"
    assert not plans[strict.best].id.startswith("int8:")


# ---------------------------------------------------------------- the benchmark


def test_bench_optimize_measures_each_variant_against_its_original(
    net_path: Path, data: Cifar10, tmp_path: Path
) -> None:
    from tierwise.bench.optimize import Group, Subject, add_variants, measure, report

    variants = tmp_path / "variants"
    source = cifar_source(net_path, "cifar10-net")
    options = OptimizeOptions(name="student-w4", student_width=4, epochs=2, lr=0.1)
    run_optimize(source, options, variants, _held_out(data), data, None, None)
    export = OptimizeOptions(name="fp32")
    export_source = cifar_source(net_path, "cifar10-net")
    run_optimize(export_source, export, variants, _held_out(data), None, None, None)
    x = normalise(data.x_test[:64])
    original = Subject("cifar10-net (PyTorch fp32)", "torch", str(net_path), 1)
    original.size_bytes = net_path.stat().st_size
    sets = [("test", 0, 64, data.y_test[:64]), ("unlabelled", 0, 64, None)]
    group = Group("cifar10-net", x, sets, [original])
    add_variants(group, variants)
    assert [s.label for s in group.subjects][1:] == [
        "cifar10-net:fp32",
        "cifar10-net:student-w4",
    ]
    empty = measure([group], threads=1, repeats=3, console=Console(quiet=True))
    results = tmp_path / "results"
    out = report([group], empty, 1, results, Console(quiet=True))
    rows = out["sections"][0]["rows"]
    assert rows[0]["agreement:test"] == 1.0 and rows[0]["speedup_b1"] == 1.0
    assert rows[1]["agreement:test"] == 1.0  # the export answers as the network does
    assert rows[2]["params"] < rows[0]["params"] / 3
    assert rows[2]["size_ratio"] > 1 and rows[2]["peak_rss_mb"] > 0
    target = out["sections"][0]["targets"][0]
    assert target["target"].startswith("student ≤ 1/4 of the parameters")
    assert {p.name for p in results.iterdir()} == {"optimize.json", "optimize.md", "optimize.png"}
    # Without labels, agreement is also given where the original is decisive.
    decisive = rows[0]["decisive:unlabelled"]
    assert 0 < decisive <= 64 and rows[0]["agreement:unlabelled:decisive"] == 1.0
    assert 0 <= rows[2]["agreement:unlabelled:decisive"] <= 1
    markdown = (results / "optimize.md").read_text()
    assert f"on the {decisive} unlabelled inputs where" in markdown
    # The fp32 export gives the rounding floor: its weights alone rounded three ways.
    floor = out["sections"][0]["rounding_floor"]
    assert [r["rounding"] for r in floor] == ["fp16", "bf16", "int8"]
    assert all(0 <= r["flipped:test"] <= 64 for r in floor)
    assert "Rounding floor" in markdown


def test_top_margins_are_the_lead_of_the_top_class_in_probability() -> None:
    from tierwise.bench.optimize_worker import top_margins

    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    assert top_margins(logits) == pytest.approx([0.5, 0.05])


@pytest.mark.parametrize("bits", [7, 8])
def test_bias_correction_cancels_the_mean_shift_of_each_rounded_conv(
    net_path: Path, data: Cifar10, bits: WeightBits
) -> None:
    """Rounding a conv's weights moves its mean output by (W_q - W)·E[x]; the corrected
    bias the int8 graph carries takes that away, at either weight width.

    Each conv of the first three stages is checked with only its own weights rounded (as
    the int8 graph rounds them), its input from the fp32 chain, and its output read before
    the activation: what the correction promises, short of the border pixels that see
    zero padding instead of the mean (on the fourth stage's 4×4 maps, most pixels do).
    Reading the int8 chain's stage outputs instead mixes in the activations' rounding,
    which bias correction does not touch and which dwarfs a shift this small (on this
    network, 8-bit weights' shift at a stage's output shrank by 16%, and the first
    stage's grew); the int8 kernels are not involved here, so the check does not depend
    on the CPU's instruction set."""
    from tierwise.optimize.onnx_export import export_stages
    from tierwise.optimize.onnx_quantize import quantize_static_stages

    source = cifar_source(net_path, "cifar10-net")
    graphs = export_stages(source.net, source.input_shape)[:3]
    x = normalise(data.x_train[:64])
    plain = quantize_static_stages(graphs, x, weight_bits=bits, bias_correction=False)
    fixed = quantize_static_stages(graphs, x, weight_bits=bits, bias_correction=True)
    before, after = [], []
    for fp32, int8_plain, int8_fixed in zip(graphs, plain, fixed, strict=True):
        rounded, _ = _dequantized_convs(int8_plain)
        rounded_again, corrected = _dequantized_convs(int8_fixed)
        # the second pass rounds the same weights; only the biases moved
        for name, w in rounded.items():
            np.testing.assert_array_equal(rounded_again[name], w)
        want = _conv_outputs(fp32, x)
        for name, w in rounded.items():
            for shifts, bias in ((before, None), (after, corrected[name])):
                got = _conv_outputs(_with_conv(fp32, name, w, bias), x)[name]
                shifts.append(_mean_shift(got, want[name]))
        x = _run_chain([fp32], x)
    assert len(before) == 5
    assert min(before) > 3e-4  # every conv's rounding moved its output measurably
    assert sum(after) < 0.2 * sum(before)
    assert all(a < 0.3 * b for a, b in zip(after, before, strict=True))


def _dequantized_convs(graph: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each QLinearConv's weights and bias as floats (codes × scales), by fp32 conv name."""
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    weights, biases = {}, {}
    for node in model.graph.node:
        if node.op_type != "QLinearConv":
            continue
        name = node.name.removesuffix("_quant")
        w_scale = init[node.input[4]]
        weights[name] = init[node.input[3]] * w_scale.reshape(-1, 1, 1, 1)
        biases[name] = init[node.input[8]] * init[node.input[1]] * w_scale
    return weights, biases


def _with_conv(
    graph: bytes, name: str, weights: np.ndarray, bias: np.ndarray | None = None
) -> bytes:
    """``graph`` with one conv's weights (and bias, if given) replaced."""
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    conv = next(n for n in model.graph.node if n.name == name)
    init = {t.name: t for t in model.graph.initializer}
    new = {conv.input[1]: weights} | ({} if bias is None else {conv.input[2]: bias})
    for tensor_name, value in new.items():
        tensor = init[tensor_name]
        tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), tensor_name))
    data: bytes = model.SerializeToString()
    return data


def _conv_outputs(graph: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every conv's output before its activation, by conv name."""
    from tierwise.models.onnx_variant import session

    model = onnx.load_from_string(graph)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        info = onnx.helper.make_tensor_value_info(conv.output[0], onnx.TensorProto.FLOAT, None)
        model.graph.output.append(info)
    found = session(model.SerializeToString()).run([c.output[0] for c in convs], {"x": x})
    return {c.name: out for c, out in zip(convs, found, strict=True)}


def _mean_shift(got: np.ndarray, want: np.ndarray) -> float:
    """How far each channel's mean moved, averaged over the channels."""
    return float(np.abs((got - want).astype(np.float64).mean(axis=(0, 2, 3))).mean())


def _run_chain(graphs: list[bytes], x: np.ndarray) -> np.ndarray:
    from tierwise.optimize.onnx_export import run_graphs

    return run_graphs(graphs, x)


# ---------------------------------------------------------------- rounding floor and pruning


@pytest.mark.parametrize("bits", [7, 8])
def test_rounding_floor_rounds_each_weight_to_its_format(net_path: Path, bits: WeightBits) -> None:
    from onnx import numpy_helper

    from tierwise.bench.rounding_floor import round_weights
    from tierwise.optimize.onnx_export import export_stages

    source = cifar_source(net_path, "cifar10-net")
    graph = export_stages(source.net, source.input_shape)[0]
    conv = next(n for n in onnx.load_from_string(graph).graph.node if n.op_type == "Conv")

    def weights(g: bytes) -> np.ndarray:
        found = {t.name: t for t in onnx.load_from_string(g).graph.initializer}
        return numpy_helper.to_array(found[conv.input[1]])

    w = weights(graph)
    int8 = weights(round_weights(graph, "int8", bits))
    top = 2 ** (bits - 1) - 1
    for channel, rounded in zip(w, int8, strict=True):
        step = np.abs(channel).max() / top
        assert len(np.unique(rounded)) <= 2 * top + 1
        assert np.abs(rounded - channel).max() <= step / 2 + 1e-7
        assert np.allclose(rounded / step, np.round(rounded / step), atol=1e-3)
    bf16 = weights(round_weights(graph, "bf16"))
    assert np.array_equal(bf16, torch.from_numpy(w.copy()).to(torch.bfloat16).float().numpy())
    fp16 = weights(round_weights(graph, "fp16"))
    assert np.array_equal(fp16, w.astype(np.float16).astype(np.float32))
    assert not np.array_equal(fp16, w)
    with pytest.raises(ValueError, match="rounding: expected one of"):
        round_weights(graph, "int4")


@pytest.mark.parametrize("bits", [7, 8])
def test_rounding_floor_rounds_a_classifier_per_output_row(bits: WeightBits) -> None:
    """An exported Linear is a Gemm with transposed weights (out × in): one scale per row."""
    from onnx import numpy_helper

    from tierwise.bench.rounding_floor import round_weights
    from tierwise.optimize.onnx_export import export_stages

    linear = torch.nn.Linear(6, 3)
    with torch.no_grad():
        linear.weight.mul_(torch.tensor([[1.0], [10.0], [100.0]]))  # rows far apart in scale
    graph = export_stages(torch.nn.Sequential(linear), (6,))[0]
    gemm = next(n for n in onnx.load_from_string(graph).graph.node if n.op_type == "Gemm")
    found = {
        t.name: t
        for t in onnx.load_from_string(round_weights(graph, "int8", bits)).graph.initializer
    }
    rounded = numpy_helper.to_array(found[gemm.input[1]])
    top = 2 ** (bits - 1) - 1
    for row, original in zip(rounded, linear.weight.detach().numpy(), strict=True):
        step = np.abs(original).max() / top
        assert np.abs(row - original).max() <= step / 2 + 1e-6  # its own scale, not the widest


def test_pruning_keeps_multiples_of_8_channels_without_cutting_narrow_layers_deep() -> None:
    from tierwise.optimize.prune import kept_channels, prune_channels

    assert kept_channels(32, 0.2) == 24  # 25 asked, down to 24
    assert kept_channels(128, 0.2) == 96  # 102 asked
    assert kept_channels(16, 0.2) == 16  # 12 asked: 8 would be a third short, so up
    assert kept_channels(24, 0.1) == 24  # 21 asked: 16 is too few
    assert kept_channels(6, 0.5) == 6  # narrower than 8: left alone
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 96, 1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(96, 10),
    )
    prune_channels(net, (3, 16, 16), 0.1)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 80]  # 86 asked of 96, down to 80
    assert net[6].in_features == 80 and net[6].out_features == 10  # classifier keeps its outputs
