"""What MiniLM sees of a request: its sentence vector, and the tools of the training
requests nearest to it.

Two optional feature groups beside the cues and words of
:mod:`~tierwise.orchestrate.features`, chosen or not by cross-validation:

- **embed**: the request's all-MiniLM-L6-v2 vector (384 numbers, unit length) times a
  weight: paraphrases the cue list does not know land near the requests they mean;
- **knn**: for each tool, the similarity-weighted share of the ``k`` nearest training
  requests (cosine of the vectors, softmax at ``temperature``) whose graph uses it, times
  a weight. TaskBench's requests come in families ("an audio clip describing the objects"
  is segmentation → captioning → speech → audio cleanup), so the neighbours' tools carry
  the steps a request does not spell out. A training row never counts itself.

Planning a request costs one MiniLM forward pass (one thread: tens of milliseconds on a
small CPU) and one matrix product; the training vectors travel in the planner's file.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierwise.errors import DependencyMissingError

#: fewer training requests than this and the MiniLM designs are not tried: too few
#: neighbours to learn from, and the gateway's default planner must train in seconds
EMBED_MIN_EXAMPLES = 100
_CACHE_LIMIT = 4096
_cache: dict[str, np.ndarray] = {}
_lock = threading.Lock()


def minilm_available() -> bool:
    try:
        from tierwise.models.minilm import minilm_dir

        minilm_dir()
    except DependencyMissingError:
        return False
    return True


def embed(texts: Sequence[str], remember: bool = True) -> np.ndarray:
    """Unit-length MiniLM vectors of ``texts`` (one row each), remembered by text: the
    cross-validation folds embed each training request once. Planning does not
    remember (``remember=False``): a request is seldom asked twice."""
    if not remember:
        return _forward(list(texts))
    missing = [t for t in dict.fromkeys(texts) if t not in _cache]
    if missing:
        vectors = _forward(missing)
        with _lock:
            if len(_cache) + len(missing) > _CACHE_LIMIT:
                _cache.clear()
            _cache.update(zip(missing, vectors, strict=True))
    return np.stack([_cache[t] for t in texts]) if texts else np.zeros((0, 0), np.float32)


def _forward(texts: list[str]) -> np.ndarray:
    import torch

    from tierwise.models.minilm import load_bert, mean_pooled, minilm_dir

    folder = minilm_dir()
    model, tokenizer = load_bert(folder), _tokenizer(folder)
    with _lock:
        threads = torch.get_num_threads()
        # one request is a small matrix: one thread is faster than two that contend
        torch.set_num_threads(1)
        try:
            out: np.ndarray = mean_pooled(model, tokenizer, texts).vectors
        finally:
            torch.set_num_threads(threads)
    return out


_tokenizers: dict[Any, Any] = {}


def _tokenizer(folder: Any) -> Any:
    from tierwise.models.minilm import load_tokenizer

    if folder not in _tokenizers:
        _tokenizers[folder] = load_tokenizer(folder)
    return _tokenizers[folder]


@dataclass(frozen=True)
class Neighbours:
    """The embed and knn feature groups: the training vectors and their tools."""

    vectors: np.ndarray  # (training requests, 384) unit length
    labels: np.ndarray  # (training requests, tools) 0/1
    embed_weight: float
    knn_weight: float
    k: int = 15
    temperature: float = 0.05

    @property
    def width(self) -> int:
        embed = self.vectors.shape[1] if self.embed_weight > 0 else 0
        return embed + (self.labels.shape[1] if self.knn_weight > 0 else 0)

    def transform(self, vectors: np.ndarray, own: Sequence[int] | None = None) -> np.ndarray:
        """The feature rows for requests with these vectors; ``own[i]``: the training row
        that request i is (left out of its own neighbours), or -1."""
        parts = [vectors * self.embed_weight] if self.embed_weight > 0 else []
        if self.knn_weight > 0:
            parts.append(self.knn(vectors, own) * self.knn_weight)
        if not parts:
            return np.zeros((len(vectors), 0), np.float32)
        return np.concatenate(parts, 1).astype(np.float32)

    def knn(self, vectors: np.ndarray, own: Sequence[int] | None = None) -> np.ndarray:
        """Per tool, the softmax-weighted share of the nearest training requests using it."""
        sims = vectors @ self.vectors.T
        if own is not None:
            rows = [i for i, j in enumerate(own) if j >= 0]
            sims[rows, [own[i] for i in rows]] = -np.inf
        k = min(self.k, sims.shape[1] - (1 if own is not None else 0))
        if k < 1:
            return np.zeros((len(vectors), self.labels.shape[1]), np.float32)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        near = np.take_along_axis(sims, top, 1)
        weights = np.exp((near - near[:, :1]) / self.temperature)
        weights /= weights.sum(1, keepdims=True)
        out: np.ndarray = np.einsum("nk,nkt->nt", weights, self.labels[top])
        return out.astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"neighbours.vectors": self.vectors, "neighbours.labels": self.labels}

    def to_json(self) -> dict[str, Any]:
        return {
            "embed_weight": self.embed_weight,
            "knn_weight": self.knn_weight,
            "k": self.k,
            "temperature": self.temperature,
        }

    @classmethod
    def load(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Neighbours:
        return cls(
            arrays["neighbours.vectors"],
            arrays["neighbours.labels"],
            float(meta["embed_weight"]),
            float(meta["knn_weight"]),
            int(meta["k"]),
            float(meta["temperature"]),
        )
