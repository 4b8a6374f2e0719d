"""The cost model: what each plan is predicted to take in seconds, dollars and joules.

Pure numpy over a :class:`PlanTable`. Everything that does not change between requests
(compute times from profiles, payload sizes, prices, power) is laid out once per table
as arrays; a decision only adds the live part, link transfer and queueing, so that
costing ~50 plans takes microseconds.

    latency = compute (profiles, emulated slow-down included)
            + bytes_up / bandwidth + bytes_down / bandwidth + RTT     (remote plans)
            + the same over the second link                          (three-tier plans)
            + queueing on the nodes used + a local call overhead
    usd     = node price × compute s + egress price × bytes leaving a tier + tokens × price
    joules  = node active watts × compute s + radio J/byte × bytes (device side)

A model called whole (embeddings, VQA) computes ``items × call:ms`` on its node, sends
the request's own bytes up and ``items × out:bytes`` down (both measured, see
:mod:`~tierwise.placement.profiles`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tierwise.config import ClusterSpec
from tierwise.ledger.prices import is_paid
from tierwise.placement.costing import Measured, plan_cost
from tierwise.placement.plans import ORIGINAL, Plan
from tierwise.placement.profiles import (
    ANY_NODE,
    CALL_MS,
    MODEL_ACCURACY,
    MODEL_AGREEMENT,
    OUT_BYTES,
    Profiles,
    accuracy_metric,
    codec_metric,
    pair_accuracy_metric,
)

#: HTTP request and response headers on a node call, measured on the wire (~250 B each
#: way for our clients); added to every remote plan's payload.
HTTP_OVERHEAD_UP = 300
HTTP_OVERHEAD_DOWN = 250
#: A call to a node on the client's own tier (loopback HTTP).
LOCAL_CALL_S = 0.002
#: Bytes per token of chat text, for predicting chat payloads.
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True)
class LiveState:
    """The live inputs of one decision, indexed like the table's links and nodes."""

    bandwidth: np.ndarray  # bytes/s per link
    rtt: np.ndarray  # seconds per link
    link_up: np.ndarray  # bool per link
    queue_s: np.ndarray  # expected wait per node
    node_up: np.ndarray  # bool per node

    # The common case (everything up, nothing queued) lets a decision skip whole steps.
    @property
    def all_up(self) -> bool:
        up = np.count_nonzero(self.link_up) + np.count_nonzero(self.node_up)
        return bool(up == len(self.link_up) + len(self.node_up))

    @property
    def queued(self) -> bool:
        return bool(np.count_nonzero(self.queue_s))


@dataclass
class PlanTable:
    plans: list[Plan]
    links: list[str]
    nodes: list[str]
    compute_s: np.ndarray
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    link: np.ndarray  # int, -1 = none
    head: np.ndarray  # int node index, -1 = none
    tail: np.ndarray  # int node index, -1 = none
    usd: np.ndarray
    joules: np.ndarray
    quality: np.ndarray  # nan = unknown; vision: measured top-1 accuracy
    #: top-1 agreement with the unsplit fp32 model where fp32 is decisive; nan = unknown
    agreement: np.ndarray
    sends_raw: np.ndarray
    sends_features: np.ndarray
    paid: np.ndarray
    profiled: np.ndarray
    local_calls: np.ndarray  # how many calls go to a node on the client's tier
    #: compute seconds ÷ sqrt(measurements behind them); 0 where the estimate is settled
    uncertainty_s: np.ndarray
    #: three-tier plans' second hop: its link and last node (-1 = none), and its bytes
    link2: np.ndarray
    last: np.ndarray
    bytes2: np.ndarray
    #: True where ``quality`` was measured on labelled data (vision, models called
    #: whole); chat qualities are the router's predictions, which the default quality
    #: floor does not judge
    quality_measured: bool = False

    def __post_init__(self) -> None:
        # Index arrays with -1 clipped to 0, and masks saying where they are real, so a
        # decision is a handful of vector operations with no branching.
        self._has_link, self._li = self.link >= 0, np.maximum(self.link, 0)
        self._has_head, self._hi = self.head >= 0, np.maximum(self.head, 0)
        self._has_tail, self._ti = self.tail >= 0, np.maximum(self.tail, 0)
        self._has_link2, self._l2 = self.link2 >= 0, np.maximum(self.link2, 0)
        self._has_last, self._lasti = self.last >= 0, np.maximum(self.last, 0)
        self._three_tier = bool(self._has_link2.any())
        self._bytes = self.bytes_up + self.bytes_down
        self.set_quality(self.quality)
        self._fixed_s = self.compute_s + self.local_calls * LOCAL_CALL_S
        self._everywhere = np.ones(len(self.plans), dtype=bool)

    def set_quality(self, quality: np.ndarray) -> None:
        """Each plan's quality (NaN: unknown), and the same with unknown ones filled in, once,
        for the floor's and the objective's sums. Qualities change only through here, so
        the filled-in copies cannot go stale (the router's predictions come after build)."""
        self.quality = quality
        self.quality_known = ~np.isnan(quality)
        self.quality_or_0 = np.nan_to_num(quality, nan=0.0)
        self.quality_or_neg = np.nan_to_num(quality, nan=-1.0)

    def predict(self, live: LiveState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latency s, usd, joules) for every plan under ``live``."""
        li = self._li
        latency = self._fixed_s + self._has_link * (self._bytes / live.bandwidth[li] + live.rtt[li])
        if self._three_tier:
            l2 = self._l2
            latency = latency + self._has_link2 * (self.bytes2 / live.bandwidth[l2] + live.rtt[l2])
        if live.queued:
            q = live.queue_s
            latency = latency + self._has_head * q[self._hi] + self._has_tail * q[self._ti]
            latency = latency + self._has_last * q[self._lasti]
        return latency, self.usd, self.joules

    def reachable(self, live: LiveState) -> np.ndarray:
        """Plans whose nodes and link are up right now."""
        if live.all_up:
            return self._everywhere
        return np.asarray(
            (~self._has_link | live.link_up[self._li])
            & (~self._has_head | live.node_up[self._hi])
            & (~self._has_tail | live.node_up[self._ti])
            & (~self._has_link2 | live.link_up[self._l2])
            & (~self._has_last | live.node_up[self._lasti])
        )


@dataclass
class _Row:
    compute_s: float = math.nan
    bytes_up: float = 0.0
    bytes_down: float = 0.0
    usd: float = 0.0
    joules: float = 0.0
    quality: float = math.nan
    agreement: float = math.nan
    paid: bool = False
    uncertainty_s: float = 0.0
    bytes2_up: float = 0.0  # over a three-tier plan's second link
    bytes2_down: float = 0.0


def build_vision_table(spec: ClusterSpec, plans: list[Plan], profiles: Profiles) -> PlanTable:
    rows = [_vision_row(spec, p, profiles) for p in plans]
    return _table(spec, plans, rows, quality_measured=True)


def build_chat_table(
    spec: ClusterSpec,
    plans: list[Plan],
    profiles: Profiles,
    prompt_tokens: Mapping[str, int],
    max_tokens: int,
    exact_tokens: bool = False,
) -> PlanTable:
    """Chat plans for one request. ``prompt_tokens`` is per model (tokenizers differ);
    answers are predicted at the model's typical length, or ``max_tokens`` exactly."""
    rows = [
        _chat_row(spec, p, profiles, prompt_tokens[p.model], max_tokens, exact_tokens)
        for p in plans
    ]
    return _table(spec, plans, rows)


def build_whole_table(
    spec: ClusterSpec, plans: list[Plan], profiles: Profiles, items: int, request_bytes: int
) -> PlanTable:
    """Plans of a model called whole, for one request of ``items`` inputs (texts, or
    image-and-question pairs) whose body is ``request_bytes`` long."""
    rows = [_whole_row(spec, p, profiles, items, request_bytes) for p in plans]
    return _table(spec, plans, rows, quality_measured=True)


def _whole_row(
    spec: ClusterSpec, plan: Plan, profiles: Profiles, items: int, request_bytes: int
) -> _Row:
    row = _Row()
    assert plan.tail_node is not None
    per_item_ms = profiles.get(plan.tail_node, plan.model, CALL_MS)
    out_bytes = profiles.get(ANY_NODE, plan.model, OUT_BYTES)
    if per_item_ms is None or out_bytes is None:
        return row  # unprofiled: the planner skips it
    seconds = items * per_item_ms / 1e3
    row.compute_s = seconds
    accuracy = profiles.get(ANY_NODE, plan.model, MODEL_ACCURACY)
    row.quality = math.nan if accuracy is None else accuracy
    if plan.remote:
        row.bytes_up = request_bytes + HTTP_OVERHEAD_UP
        row.bytes_down = items * out_bytes + HTTP_OVERHEAD_DOWN
    _price_and_energy(spec, plan, row, 0.0, seconds, 0, 0)
    return row


def _vision_row(spec: ClusterSpec, plan: Plan, profiles: Profiles) -> _Row:
    if plan.split2 is not None:
        return _three_tier_row(spec, plan, profiles)
    row = _Row()
    head_ms = (
        profiles.stage_ms(plan.head_node, plan.model, 0, plan.split) if plan.head_node else 0.0
    )
    tail_ms = (
        profiles.stage_ms(plan.tail_node, plan.model, plan.split, plan.n_stages)
        if plan.tail_node
        else 0.0
    )
    link = _link_numbers(plan, profiles)
    if head_ms is None or tail_ms is None or link is None:
        return row  # unprofiled: compute_s stays nan and the planner skips it
    codec_ms, wire_bytes, out_bytes, agreement = link
    row.compute_s = (head_ms + tail_ms + codec_ms) / 1e3
    accuracy = profiles.get(ANY_NODE, plan.model, accuracy_metric(plan.codec, plan.split))
    row.quality = math.nan if accuracy is None else accuracy
    # A variant agrees with its base model only so often; its codec errors add to that.
    variant_agreement = profiles.get(ANY_NODE, plan.model, MODEL_AGREEMENT)
    row.agreement = agreement * (1.0 if variant_agreement is None else variant_agreement)
    if plan.remote:
        row.bytes_up = wire_bytes + HTTP_OVERHEAD_UP
        row.bytes_down = out_bytes + HTTP_OVERHEAD_DOWN
    _price_and_energy(spec, plan, row, head_ms / 1e3, tail_ms / 1e3, 0, 0)
    return row


def _three_tier_row(spec: ClusterSpec, plan: Plan, profiles: Profiles) -> _Row:
    """Head, middle and last stages on three nodes; a codec on each of two links. The
    answer comes back the way the request went, so each link also carries the logits."""
    row = _Row()
    assert plan.split2 is not None and plan.codec2 is not None and plan.last_node is not None
    assert plan.head_node is not None and plan.tail_node is not None
    model, a, b, n = plan.model, plan.split, plan.split2, plan.n_stages
    times = (
        profiles.stage_ms(plan.head_node, model, 0, a),
        profiles.stage_ms(plan.tail_node, model, a, b),
        profiles.stage_ms(plan.last_node, model, b, n),
    )
    first, second = _link_numbers(plan, profiles), _codec_numbers(plan, plan.codec2, b, profiles)
    if None in times or first is None or second is None:
        return row  # unprofiled
    head_ms, mid_ms, last_ms = (t or 0.0 for t in times)
    row.compute_s = (head_ms + mid_ms + last_ms + first[0] + second[0]) / 1e3
    row.quality = _pair_accuracy(plan, profiles)
    row.agreement = first[3] * second[3]
    row.bytes_up, row.bytes_down = first[1] + HTTP_OVERHEAD_UP, first[2] + HTTP_OVERHEAD_DOWN
    row.bytes2_up, row.bytes2_down = second[1] + HTTP_OVERHEAD_UP, first[2] + HTTP_OVERHEAD_DOWN
    seconds = (head_ms / 1e3, mid_ms / 1e3, last_ms / 1e3)
    _price_and_energy(spec, plan, row, seconds[0], seconds[1], 0, 0, seconds[2])
    return row


def _pair_accuracy(plan: Plan, profiles: Profiles) -> float:
    """A three-tier plan's accuracy: measured for its pair of codecs, or, where both are
    lossless (``raw`` moves the float32 tensor bit for bit), the unsplit model's own."""
    assert plan.split2 is not None and plan.codec is not None and plan.codec2 is not None
    metric = pair_accuracy_metric(plan.codec, plan.split, plan.codec2, plan.split2)
    measured = profiles.get(ANY_NODE, plan.model, metric)
    if measured is None and plan.codec in LOSSLESS and plan.codec2 in LOSSLESS:
        measured = profiles.get(ANY_NODE, plan.model, MODEL_ACCURACY)
    return math.nan if measured is None else measured


#: feature codecs whose decoded tensor equals the encoded one exactly
LOSSLESS = frozenset({"raw"})


def _link_numbers(plan: Plan, profiles: Profiles) -> tuple[float, float, float, float] | None:
    """(codec ms, payload bytes, output bytes, top-1 agreement) of what crosses the link."""
    if plan.codec is None:
        return 0.0, 0.0, 0.0, 1.0
    return _codec_numbers(plan, plan.codec, plan.split, profiles)


def _codec_numbers(
    plan: Plan, codec: str, split: int, profiles: Profiles
) -> tuple[float, float, float, float] | None:
    model = plan.profile_model
    out_bytes = profiles.get(ANY_NODE, model, OUT_BYTES)
    if codec == ORIGINAL:
        # The uploaded bytes as they are: no coding time, and the far node decodes the
        # same bytes the client would, so its answer is the unsplit model's by construction.
        size = profiles.get(ANY_NODE, model, codec_metric(codec, split, "bytes"))
        return None if size is None or out_bytes is None else (0.0, size, out_bytes, 1.0)
    values = [
        profiles.get(ANY_NODE, model, codec_metric(codec, split, what))
        for what in ("ms", "bytes", "agreement")
    ]
    codec_ms, wire_bytes, agreement = values
    if codec_ms is None or wire_bytes is None or agreement is None or out_bytes is None:
        return None
    return codec_ms, wire_bytes, out_bytes, agreement


def _chat_row(
    spec: ClusterSpec,
    plan: Plan,
    profiles: Profiles,
    prompt_tokens: int,
    max_tokens: int,
    exact_tokens: bool,
) -> _Row:
    row = _Row()
    node = plan.tail_node
    assert node is not None
    prefill = profiles.get(node, plan.model, "llm:prefill_tok_s")
    decode = profiles.get(node, plan.model, "llm:decode_tok_s")
    overhead = profiles.get(node, plan.model, "llm:overhead_ms") or 0.0
    typical = profiles.get(node, plan.model, "llm:completion_tokens")
    if not prefill or not decode:
        return row
    out_tokens = min(max_tokens, typical) if typical and not exact_tokens else max_tokens
    seconds = overhead / 1e3 + prompt_tokens / prefill + out_tokens / decode
    row.compute_s = seconds
    samples = profiles.samples(node, plan.model, "llm:decode_tok_s")
    row.uncertainty_s = seconds / math.sqrt(max(samples, 1))
    model_spec = spec.models[plan.model]
    prior = getattr(model_spec, "quality", None)
    row.quality = prior.value if prior is not None else math.nan
    if plan.remote:
        row.bytes_up = prompt_tokens * BYTES_PER_TOKEN + HTTP_OVERHEAD_UP
        row.bytes_down = out_tokens * BYTES_PER_TOKEN + HTTP_OVERHEAD_DOWN + 200
    _price_and_energy(spec, plan, row, 0.0, seconds, prompt_tokens, round(out_tokens))
    return row


def _price_and_energy(
    spec: ClusterSpec,
    plan: Plan,
    row: _Row,
    head_s: float,
    tail_s: float,
    tin: int,
    tout: int,
    last_s: float = 0.0,
) -> None:
    quantities = Measured(0.0, int(row.bytes_up), int(row.bytes_down), head_s, tail_s, tin, tout)
    quantities.last_compute_s = last_s
    quantities.bytes2_up, quantities.bytes2_down = int(row.bytes2_up), int(row.bytes2_down)
    row.usd, row.joules = plan_cost(spec, plan, quantities)
    row.paid = any(
        is_paid(spec.prices, spec.node(name), plan.model)
        for name in (plan.head_node, plan.tail_node, plan.last_node)
        if name is not None
    )


def _table(
    spec: ClusterSpec, plans: list[Plan], rows: list[_Row], quality_measured: bool = False
) -> PlanTable:
    links = [lk.name for lk in spec.links]
    nodes = [n.name for n in spec.nodes]

    def index(names: list[str], name: str | None) -> int:
        return -1 if name is None else names.index(name)

    def col(values: list[float] | list[bool] | list[int], dtype: type) -> np.ndarray:
        return np.asarray(values, dtype=dtype)

    return PlanTable(
        plans=plans,
        links=links,
        nodes=nodes,
        compute_s=col([r.compute_s for r in rows], float),
        bytes_up=col([r.bytes_up for r in rows], float),
        bytes_down=col([r.bytes_down for r in rows], float),
        link=col([index(links, p.link) for p in plans], int),
        head=col([index(nodes, p.head_node) for p in plans], int),
        tail=col([index(nodes, p.tail_node) for p in plans], int),
        usd=col([r.usd for r in rows], float),
        joules=col([r.joules for r in rows], float),
        quality=col([r.quality for r in rows], float),
        agreement=col([r.agreement for r in rows], float),
        sends_raw=col([p.sends in ("raw", "prompt") for p in plans], bool),
        sends_features=col([p.sends == "features" for p in plans], bool),
        paid=col([r.paid for r in rows], bool),
        profiled=col([not math.isnan(r.compute_s) for r in rows], bool),
        local_calls=col([_local_calls(p) for p in plans], float),
        uncertainty_s=col([r.uncertainty_s for r in rows], float),
        link2=col([index(links, p.link2) for p in plans], int),
        last=col([index(nodes, p.last_node) for p in plans], int),
        bytes2=col([r.bytes2_up + r.bytes2_down for r in rows], float),
        quality_measured=quality_measured,
    )


def _local_calls(plan: Plan) -> int:
    if plan.task != "classify":  # one node answers the whole call
        return 0 if plan.remote else 1
    return 1 if plan.head_node is not None else 0
