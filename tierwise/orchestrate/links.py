"""Which chosen tool feeds which: a learned score per ordered pair, and the best path.

For tools a and b of one request, the features of the link a → b are

- ``adjacent``: b's first cue phrase is the next one after a's, among the chosen tools
  (requests tend to name their steps in order);
- ``before``: +1 when a's first cue comes before b's, -1 after, 0 when one has none;
- ``compatible``: a writes a media type b reads (the catalog's types);
- ``prior``: how often a fed b in the training graphs where both appeared (log odds,
  smoothed, each graph's own links left out when it is a training row);
- ``own_file``: a file b can read is named right after b's first cue, before the next
  tool's ("summarize notes.txt"): b likely reads the file, not another step.

A logistic regression on these is fitted to the training graphs' links (their own tools).
Planning then orders the tools by the path of best total score (Held-Karp, exact, for up
to :data:`MAX_TOOLS` tools) and links consecutive tools whose score is positive; with
``fan_in`` a tool that reads two inputs may take a second earlier tool as well.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tierwise.orchestrate.catalog import Catalog, file_names, media_type
from tierwise.orchestrate.cues import cue_matches
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.logistic import Logistic

LINK_FEATURES = ("adjacent", "before", "compatible", "prior", "own_file")
_NEAR = 40  # "close": within this many characters
MAX_TOOLS = 8  # Held-Karp is 2^n·n²: 8 tools plan in about a millisecond
_NONE = -1e9


@dataclass(frozen=True)
class Sight:
    """What one request shows about each of its chosen tools."""

    cues: np.ndarray  # where the tool's first cue starts (share of the text), NaN if none
    own_file: np.ndarray  # 0/1: a file the tool reads is named near that cue


def sight(text: str, files: Sequence[str], names: Sequence[str], catalog: Catalog) -> Sight:
    where = {t: np.nan for t in names}
    for m in cue_matches(text):
        if m.tool in where and not m.start >= where[m.tool]:
            where[m.tool] = m.start
    low, length = text.lower(), max(len(text), 1)
    spots = [(media_type(f), low.find(f.lower()) / length) for f in files if f.lower() in low]
    starts = sorted(v for v in where.values() if not np.isnan(v))
    own = []
    for t in names:
        tool, cue = catalog.tools.get(t), where[t]
        reads = set(tool.inputs) if tool is not None else set()
        # the file follows the tool's cue, before the next tool's: "summarize notes.txt"
        end = min([v for v in starts if v > cue] + [cue + _NEAR / length])
        own.append(float(any(k in reads and cue < at < end for k, at in spots)))
    return Sight(np.array([where[t] for t in names], np.float64), np.array(own, np.float32))


@dataclass
class PairCounts:
    """Training-graph counts per tool pair: both present, and a feeding b."""

    tools: list[str]
    together: np.ndarray = field(init=False)
    linked: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.tools)
        self.together = np.zeros((n, n))
        self.linked = np.zeros((n, n))

    def add(self, example: Example, sign: float = 1.0) -> None:
        index = {t: i for i, t in enumerate(self.tools)}
        present = sorted({index[n.task] for n in example.graph.nodes if n.task in index})
        for i in present:
            for j in present:
                if i != j:
                    self.together[i, j] += sign
        for a, b in set(example.graph.resource_links()):
            if a in index and b in index and a != b:
                self.linked[index[a], index[b]] += sign

    def log_odds(self) -> np.ndarray:
        out: np.ndarray = np.log((self.linked + 0.5) / (self.together - self.linked + 1.0))
        return out


@dataclass(frozen=True)
class LinkModel:
    features: tuple[str, ...]  # the ones used (the others' weights are zero)
    weights: np.ndarray  # one per LINK_FEATURES entry
    intercept: float
    prior: np.ndarray  # (tools, tools) log odds from the training graphs
    compatible: np.ndarray  # (tools, tools) 0/1 from the catalog

    @classmethod
    def fit(
        cls, examples: Sequence[Example], catalog: Catalog, tools: list[str], use: Sequence[str]
    ) -> LinkModel:
        counts = PairCounts(tools)
        for e in examples:
            counts.add(e)
        compatible = compatibility(catalog, tools)
        rows, labels = [], []
        for e in examples:
            counts.add(e, -1.0)  # its own links are not evidence for itself
            x, y = _training_pairs(e, tools, counts.log_odds(), compatible, catalog)
            counts.add(e)
            rows.append(x)
            labels.append(y)
        mask = np.array([f in use for f in LINK_FEATURES], np.float32)
        x = np.concatenate(rows) * mask if rows else np.zeros((0, len(mask)), np.float32)
        y = np.concatenate(labels) if labels else np.zeros(0, np.float32)
        if not len(y) or not 0 < y.sum() < len(y):  # nothing to learn from: never link
            return cls(
                tuple(use), np.zeros(len(mask), np.float32), -1.0, counts.log_odds(), compatible
            )
        fitted = Logistic.fit(x, y[:, None], l2=1.0)
        return cls(
            tuple(use),
            fitted.weights[:, 0] * mask,
            float(fitted.bias[0]),
            counts.log_odds(),
            compatible,
        )

    def scores(
        self,
        text: str,
        files: Sequence[str],
        chosen: Sequence[int],
        tools: list[str],
        catalog: Catalog,
    ) -> np.ndarray:
        """The link logits between the chosen tools (indices into ``tools``)."""
        seen = sight(text, files, [tools[i] for i in chosen], catalog)
        x = pair_features(seen, chosen, self.prior, self.compatible)
        out: np.ndarray = (x @ self.weights + self.intercept).reshape(len(chosen), len(chosen))
        np.fill_diagonal(out, _NONE)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "link.weights": self.weights,
            "link.intercept": np.array([self.intercept]),
            "link.prior": self.prior,
            "link.compatible": self.compatible,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], features: list[str]) -> LinkModel:
        return cls(
            tuple(features),
            arrays["link.weights"],
            float(arrays["link.intercept"][0]),
            arrays["link.prior"],
            arrays["link.compatible"],
        )


def compatibility(catalog: Catalog, tools: list[str]) -> np.ndarray:
    def writes_read(a: str, b: str) -> bool:
        ta, tb = catalog.tools.get(a), catalog.tools.get(b)
        return ta is not None and tb is not None and bool(set(ta.outputs) & set(tb.inputs))

    return np.array([[writes_read(a, b) for b in tools] for a in tools], np.float32)


def pair_features(
    seen: Sight, chosen: Sequence[int], prior: np.ndarray, compatible: np.ndarray
) -> np.ndarray:
    """Rows of LINK_FEATURES for every ordered pair (a, b) of ``chosen``, a-major."""
    n, cues = len(chosen), seen.cues
    known = [k for k in range(n) if not np.isnan(cues[k])]
    rank = {k: r for r, k in enumerate(sorted(known, key=lambda k: cues[k]))}
    out = np.zeros((n * n, len(LINK_FEATURES)), np.float32)
    for a in range(n):
        for b in range(n):
            if a == b:
                continue
            row = out[a * n + b]
            if a in rank and b in rank:
                row[0] = float(rank[b] == rank[a] + 1)
                row[1] = 1.0 if rank[a] < rank[b] else -1.0
            row[2] = compatible[chosen[a], chosen[b]]
            row[3] = prior[chosen[a], chosen[b]]
            row[4] = seen.own_file[b]
    return out


def _training_pairs(
    example: Example, tools: list[str], prior: np.ndarray, compatible: np.ndarray, catalog: Catalog
) -> tuple[np.ndarray, np.ndarray]:
    index = {t: i for i, t in enumerate(tools)}
    chosen = sorted({index[n.task] for n in example.graph.nodes if n.task in index})
    n = len(chosen)
    if n < 2:
        return np.zeros((0, len(LINK_FEATURES)), np.float32), np.zeros(0, np.float32)
    text = example.text
    seen = sight(text, file_names(text), [tools[i] for i in chosen], catalog)
    x = pair_features(seen, chosen, prior, compatible)
    links = set(example.graph.resource_links())
    y = np.array(
        [float((tools[chosen[a]], tools[chosen[b]]) in links) for a in range(n) for b in range(n)],
        np.float32,
    )
    keep = np.array([a != b for a in range(n) for b in range(n)])
    return x[keep], y[keep]


def best_path(scores: np.ndarray, force: bool) -> list[int]:
    """The order of the tools whose consecutive links score most in total (exact).
    ``force``: every consecutive pair is linked, so a negative score counts; otherwise a
    pair with a negative score is left unlinked and counts as zero."""
    n = len(scores)
    if n <= 1:
        return list(range(n))
    gain = scores if force else np.maximum(scores, 0.0)
    full = 1 << n
    dp = np.full((full, n), _NONE)
    back = np.full((full, n), -1, np.int64)
    for i in range(n):
        dp[1 << i, i] = 0.0
    for mask in range(1, full):
        row = dp[mask]
        if row.max() <= _NONE / 2:
            continue
        total = row[:, None] + gain  # from i (in mask) to j
        best_from = total.argmax(0)
        best = total[best_from, np.arange(n)]
        for j in range(n):
            if mask & (1 << j):
                continue
            nxt = mask | (1 << j)
            if best[j] > dp[nxt, j]:
                dp[nxt, j] = best[j]
                back[nxt, j] = best_from[j]
    return _walk_back(dp, back, full - 1)


def parents(path: list[int], scores: np.ndarray, force: bool, fan_in: bool) -> dict[int, list[int]]:
    """Each tool's feeders along ``path``: its predecessor when linked (always when
    ``force``, else when the link scores above zero); with ``fan_in``, a tool also takes
    the best-scoring earlier tool whose output nothing reads yet (a branch that would
    otherwise end unused), when that link scores above zero."""
    feeds: dict[int, list[int]] = {t: [] for t in path}
    for a, b in itertools.pairwise(path):
        if force or scores[a, b] > 0:
            feeds[b].append(a)
    if not fan_in:
        return feeds
    read = {a for sources in feeds.values() for a in sources}
    for position, b in enumerate(path):
        if len(feeds[b]) > 1:
            continue
        spare = [a for a in path[:position] if a not in read and a not in feeds[b]]
        best = max(spare, key=lambda a: scores[a, b], default=None)
        if best is not None and scores[best, b] > 0:
            feeds[b].append(best)
            read.add(best)
    return feeds


def _walk_back(dp: np.ndarray, back: np.ndarray, mask: int) -> list[int]:
    last = int(dp[mask].argmax())
    path = [last]
    while back[mask, last] >= 0:
        previous = int(back[mask, last])
        mask &= ~(1 << last)
        last = previous
        path.append(last)
    return path[::-1]
