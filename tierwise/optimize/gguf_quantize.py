"""llama.cpp's own quantizer, for GGUF chat models given in higher precision.

`tierwise optimize model-f16.gguf --quantize q4_k_m` runs llama.cpp's
``llama_model_quantize`` (the library behind its ``llama-quantize`` tool) through
llama-cpp-python, then measures what the new file loses: the top next token, position by
position, against the source model on the same tokens. The result is written under a
hidden name and renamed into place with a card beside it (``<file>.json``), so a failed
run leaves no file a spec could point at.

Files already quantized (the shipped SmolLM2 Q4_1, Gemma-3 Q4_K_M) are refused unless
``--allow-requantize``: quantizing twice compounds the rounding, which is why
llama.cpp itself asks for the flag.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.errors import InputError
from tierwise.optional import require

#: our names → llama.cpp's file types (LLAMA_FTYPE_MOSTLY_*)
TYPES = {
    "q8_0": "Q8_0",
    "q6_k": "Q6_K",
    "q5_k_m": "Q5_K_M",
    "q5_0": "Q5_0",
    "q4_k_m": "Q4_K_M",
    "q4_k_s": "Q4_K_S",
    "q4_0": "Q4_0",
    "q4_1": "Q4_1",
    "q3_k_m": "Q3_K_M",
    "q2_k": "Q2_K",
}
#: GGUF general.file_type values of unquantized files: ALL_F32, MOSTLY_F16, MOSTLY_BF16
_HIGH_PRECISION = {0: "F32", 1: "F16", 32: "BF16"}
_PROBE_TEXT = (
    "Edge servers sit between a phone and the cloud. A request that runs on the device "
    "costs nothing and stays private; one that runs in the cloud is billed by the token. "
    "The planner weighs latency, dollars, energy and privacy before it chooses."
)


@dataclass(frozen=True)
class GgufCard:
    source: str
    source_sha256: str
    source_type: str
    type: str
    bytes_before: int
    bytes_after: int
    #: top next-token agreement with the source on the probe tokens, and how many
    next_token_agreement: float
    positions: int
    seconds: float


def _llama() -> Any:
    return require("llama_cpp", "llama-cpp-python", "GGUF quantization")


def source_type(path: Path) -> str:
    """The GGUF file's type name (F32, F16, BF16, or the quantized type it holds)."""
    gguf = require("gguf", "gguf", "reading GGUF files")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise InputError(f"MODEL: {path} is not a GGUF file (no GGUF magic)")
    try:
        field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    except Exception as exc:  # the reader raises what numpy raises on a cut-off file
        raise InputError(f"MODEL: {path} is not a readable GGUF file: {exc}") from exc
    if field is None:
        return "unknown"
    value = int(field.parts[-1][0])
    if value in _HIGH_PRECISION:
        return _HIGH_PRECISION[value]
    return str(gguf.LlamaFileType(value).name.removeprefix("MOSTLY_"))


def check_request(source: Path, qtype: str, allow_requantize: bool) -> str:
    """Every check before any work; returns the source's type."""
    if qtype not in TYPES:
        raise InputError(f"--quantize: for GGUF models expected one of {', '.join(TYPES)}")
    if not source.is_file():
        raise InputError(f"MODEL: {source} does not exist")
    found = source_type(source)
    if found not in _HIGH_PRECISION.values() and not allow_requantize:
        raise InputError(
            f"MODEL: {source} is already quantized ({found}); quantizing again compounds "
            "the rounding. Give an F32/F16/BF16 file, or --allow-requantize"
        )
    return found


def output_path(source: Path, qtype: str, out_dir: Path) -> Path:
    """``<stem>-<qtype>.gguf``, the stem without the source's own type (-F16, .Q4_1)."""
    known = {"f32", "f16", "bf16", *(t.lower() for t in TYPES.values())}
    stem = source.stem
    for sep in ("-", ".", "_"):
        head, _, tail = stem.rpartition(sep)
        if head and tail.lower() in known:
            stem = head
            break
    return out_dir / f"{stem}-{qtype}.gguf"


def quantize_gguf(
    source: Path,
    qtype: str,
    out_dir: Path,
    allow_requantize: bool = False,
    threads: int = 0,
) -> tuple[Path, GgufCard]:
    """Quantize ``source`` to ``qtype`` in ``out_dir``; returns the file and its card."""
    found = check_request(source, qtype, allow_requantize)
    llama = _llama()
    out = output_path(source, qtype, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{out.name}.partial"
    card_path = out.with_name(out.name + ".json")
    tmp_card = out_dir / f".{card_path.name}.partial"
    started = time.perf_counter()
    params = llama.llama_model_quantize_default_params()
    params.ftype = getattr(llama, f"LLAMA_FTYPE_MOSTLY_{TYPES[qtype]}")
    params.nthread = threads or (os.cpu_count() or 1)
    params.allow_requantize = allow_requantize
    try:
        code = llama.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
        if code != 0 or not partial.is_file():
            raise InputError(f"MODEL: llama.cpp could not quantize {source} (code {code})")
        agreement, positions = next_token_agreement(source, partial)
        card = GgufCard(
            source=str(source),
            source_sha256=_sha256(source),
            source_type=found,
            type=TYPES[qtype],
            bytes_before=source.stat().st_size,
            bytes_after=partial.stat().st_size,
            next_token_agreement=agreement,
            positions=positions,
            seconds=round(time.perf_counter() - started, 1),
        )
        tmp_card.write_text(json.dumps(asdict(card), indent=2))
        partial.replace(out)
        tmp_card.replace(card_path)
    finally:
        partial.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
    return out, card


def next_token_agreement(reference: Path, candidate: Path, length: int = 64) -> tuple[float, int]:
    """How often both models predict the same next token along the same tokens."""
    ref_model, tokens = _load(reference), None
    try:
        tokens = _probe_tokens(ref_model, length)
        want = _argmax_per_position(ref_model, tokens)
    finally:
        ref_model.close()
    candidate_model = _load(candidate)
    try:
        got = _argmax_per_position(candidate_model, tokens)
    finally:
        candidate_model.close()
    return float((want == got).mean()), len(tokens)


def _load(path: Path) -> Any:
    return _llama().Llama(str(path), n_ctx=256, logits_all=True, verbose=False, seed=0)


def _probe_tokens(model: Any, length: int) -> list[int]:
    """The probe text's tokens; models without a vocabulary get fixed pseudo-random ids."""
    if model.metadata.get("tokenizer.ggml.model", "none") != "none":
        tokens: list[int] = model.tokenize(_PROBE_TEXT.encode())[:length]
        if tokens:
            return tokens
    rng = np.random.default_rng(0)
    return [int(t) for t in rng.integers(0, model.n_vocab(), length)]


def _argmax_per_position(model: Any, tokens: list[int]) -> np.ndarray:
    model.reset()
    model.eval(tokens)
    scores = np.asarray(model.scores[: len(tokens)])
    out: np.ndarray = scores.argmax(axis=1)
    return out


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
