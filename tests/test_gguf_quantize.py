"""`tierwise optimize MODEL.gguf --quantize TYPE`: llama.cpp's quantizer on a tiny model.

The test writes its own GGUF model (a two-layer llama of random weights, in F32, with
the `gguf` package) rather than downloading one: the real quantizer, loader and
evaluation run on it exactly as on a large file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierwise.cli import app
from tierwise.errors import InputError
from tierwise.optimize.gguf_quantize import output_path, quantize_gguf, source_type

runner = CliRunner(env={"COLUMNS": "250"})


def write_tiny_llama(path: Path, seed: int = 0) -> Path:
    """A two-layer llama with 256-wide rows (K-quants need multiples of 256), in F32."""
    import gguf

    rng = np.random.default_rng(seed)
    vocab, embd, ff, layers, heads = 256, 256, 512, 2, 4
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(256)
    writer.add_embedding_length(embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(embd // heads)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("none")
    writer.add_vocab_size(vocab)

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    weight("token_embd.weight", vocab, embd)
    writer.add_tensor("output_norm.weight", np.ones(embd, np.float32))
    weight("output.weight", vocab, embd)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            weight(f"blk.{i}.{name}.weight", embd, embd)
        weight(f"blk.{i}.ffn_gate.weight", ff, embd)
        weight(f"blk.{i}.ffn_up.weight", ff, embd)
        weight(f"blk.{i}.ffn_down.weight", embd, ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


def test_q8_0_is_four_times_smaller_and_predicts_the_same_tokens(
    tiny: Path, tmp_path: Path
) -> None:
    out, card = quantize_gguf(tiny, "q8_0", tmp_path)
    assert out == tmp_path / "tiny-q8_0.gguf" and out.is_file()
    assert source_type(tiny) == "F32" and source_type(out) == "Q8_0"
    assert card.bytes_before / card.bytes_after > 3.5
    assert card.next_token_agreement >= 0.95 and card.positions == 64
    saved = json.loads((tmp_path / "tiny-q8_0.gguf.json").read_text())
    assert saved["type"] == "Q8_0" and saved["source_type"] == "F32"
    assert saved["next_token_agreement"] == card.next_token_agreement
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-q8_0.gguf", "tiny-q8_0.gguf.json"]


def test_fewer_bits_cost_more_agreement(tiny: Path, tmp_path: Path) -> None:
    _, q8 = quantize_gguf(tiny, "q8_0", tmp_path)
    _, q2 = quantize_gguf(tiny, "q2_k", tmp_path)
    assert q2.bytes_after < q8.bytes_after / 2
    assert q2.next_token_agreement < q8.next_token_agreement


def test_an_already_quantized_file_needs_allow_requantize(tiny: Path, tmp_path: Path) -> None:
    q8, _ = quantize_gguf(tiny, "q8_0", tmp_path / "a")
    with pytest.raises(InputError, match=r"already quantized \(Q8_0\).*--allow-requantize"):
        quantize_gguf(q8, "q4_0", tmp_path / "b")
    assert not (tmp_path / "b").exists()
    out, card = quantize_gguf(q8, "q4_0", tmp_path / "b", allow_requantize=True)
    assert card.source_type == "Q8_0" and source_type(out) == "Q4_0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a model at all", "is not a GGUF file"),
        (None, "is not a readable GGUF file"),  # a real file, cut short
    ],
)
def test_broken_files_are_refused_and_nothing_is_written(
    tiny: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content if content is not None else tiny.read_bytes()[:300_000])
    with pytest.raises(InputError, match=message):
        quantize_gguf(bad, "q8_0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_names_drop_the_precision_suffix(tmp_path: Path) -> None:
    assert output_path(Path("m/SmolLM2-F16.gguf"), "q4_k_m", tmp_path).name == (
        "SmolLM2-q4_k_m.gguf"
    )
    assert output_path(Path("gemma.gguf"), "q8_0", tmp_path).name == "gemma-q8_0.gguf"
    assert output_path(Path("SmolLM2-135M.Q4_1.gguf"), "q4_0", tmp_path).name == (
        "SmolLM2-135M-q4_0.gguf"
    )


def test_cli_quantizes_and_says_how_to_serve_it(tiny: Path, tmp_path: Path) -> None:
    args = ["optimize", str(tiny), "--quantize", "q4_k_m", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Q4_K_M" in result.output and "kind: llama-cpp" in result.output
    assert (tmp_path / "tiny-q4_k_m.gguf").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--quantize", "int8"], "--quantize: for GGUF models expected one of q8_0"),
        (["--quantize", "q4_0", "--prune", "0.3"], "takes only --quantize, not --prune"),
        (["--quantize", "q4_0", "--calibration", "."], "takes only --quantize, not --calibration"),
    ],
)
def test_cli_refuses_options_that_do_not_apply(
    tiny: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["optimize", str(tiny), *extra, "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "o").exists()
