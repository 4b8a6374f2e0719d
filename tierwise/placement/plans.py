"""Plans: which stage runs on which node, and what crosses which link.

A vision plan splits a staged model at ``split``: stages [0, split) run on the client's
own tier (the *head*), the rest on another node (the *tail*), with ``codec`` on the
link between them. ``split == n`` runs everything locally; ``split == 0`` sends the
input itself, compressed by an input codec, or as the caller uploaded it (``original``:
the uploaded bytes forwarded unchanged, decoded by the far node). A *three-tier* plan
has two split points: stages [0, split) on the client's tier, [split, split2) on a
middle node (the edge), the rest on a node beyond it (the cloud); ``codec`` crosses the
first link and ``codec2`` the second, and the middle node forwards to the last itself,
so the second hop really crosses the edge–cloud link. A chat plan runs a chat model on
one node, and so does a plan for a model called whole (embeddings, visual question
answering).

Plan ids are short and stable, so they can be pinned in requests and read in reports:
``local@device``, ``edge/jpeg90``, ``cloud/original``, ``split@3/edge/q8``,
``split@2/edge/q8+5/cloud/fp16``, ``chat@cloud/smollm2``, ``embed@edge/minilm``,
``vqa@device/vqa-net``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from tierwise.config import TIERS, ClusterSpec, Tier

Sends = Literal["nothing", "raw", "features", "prompt"]
Task = Literal["classify", "chat", "embed", "vqa"]
#: the tasks of models called whole: each call runs on one node
WholeTask = Literal["embed", "vqa"]

#: Codecs the planner considers by default on each kind of link crossing.
DEFAULT_INPUT_CODECS = ("jpeg90", "png")
DEFAULT_FEATURE_CODECS = ("raw", "fp16", "q8", "q4")
#: The input as the caller uploaded it: its bytes cross the link unchanged.
ORIGINAL = "original"


@dataclass(frozen=True)
class Plan:
    id: str
    task: Task
    model: str
    head_node: str | None  # runs stages [0, split) on the client's tier
    tail_node: str | None  # runs the rest, or the whole chat model
    split: int  # vision: 0..n stages on the head; chat: 0
    n_stages: int
    codec: str | None  # what crosses the link (None: nothing does)
    link: str | None  # the link crossed (None: all on the client's tier)
    tiers: tuple[Tier, ...]
    sends: Sends
    #: for a model variant (``model`` is then ``<base>:<variant>``): the model it was made
    #: from, whose input-codec profiles its offload plans share
    base: str | None = None
    #: a three-tier plan's second hop: ``tail_node`` runs [split, split2) and forwards
    #: ``codec2`` over ``link2`` to ``last_node``, which runs [split2, n)
    split2: int | None = None
    codec2: str | None = None
    link2: str | None = None
    last_node: str | None = None

    @property
    def profile_model(self) -> str:
        """The model whose codec measurements describe this plan's link."""
        return self.base or self.model

    @property
    def remote(self) -> bool:
        return self.link is not None


def led_by(model: str, plans: list[Plan]) -> list[Plan]:
    """``plans`` with ids led by ``model`` (``efficientnet-lite2:cloud/jpeg90``), so the
    plans of several models can share one table, as ``model=auto`` does."""
    return [dataclasses.replace(p, id=f"{model}:{p.id}") for p in plans]


def vision_plans(
    spec: ClusterSpec,
    model: str,
    n_stages: int,
    client_tier: Tier,
    input_codecs: tuple[str, ...] = DEFAULT_INPUT_CODECS,
    feature_codecs: tuple[str, ...] = DEFAULT_FEATURE_CODECS,
    learned_codecs: dict[int, tuple[str, ...]] | None = None,
) -> list[Plan]:
    """Every way to run ``model`` for a client on ``client_tier``.

    ``learned_codecs`` adds trained codecs at the one split point each was trained for."""
    hosts = [n for n in spec.nodes if model in n.models]
    local = [n for n in hosts if n.tier == client_tier]
    plans = [
        Plan(
            f"local@{h.name}",
            "classify",
            model,
            h.name,
            None,
            n_stages,
            n_stages,
            None,
            None,
            (client_tier,),
            "nothing",
        )
        for h in local
    ]
    head = local[0].name if local else None
    for tail in hosts:
        link = spec.link_between(client_tier, tail.tier)
        if tail.tier == client_tier or link is None:
            continue
        plans += _offload_plans(
            model, tail.name, tail.tier, n_stages, link.name, (ORIGINAL, *input_codecs)
        )
        if head is not None:
            crossing = _Crossing(head, tail.name, link.name, (client_tier, tail.tier))
            plans += _split_plans(model, crossing, n_stages, feature_codecs, learned_codecs or {})
    return plans


def three_tier_plans(
    spec: ClusterSpec,
    model: str,
    n_stages: int,
    client_tier: Tier,
    feature_codecs: tuple[str, ...] = DEFAULT_FEATURE_CODECS,
) -> list[Plan]:
    """Head on the client's tier, middle stages on a node one link away, the rest on a
    node one more link beyond, for every pair of split points and codec on each link.
    Work only moves outward (device → edge → cloud): back towards the client it would
    carry features further for nothing."""
    hosts = [n for n in spec.nodes if model in n.models]
    local = [n for n in hosts if n.tier == client_tier]
    if not local:
        return []
    plans = []
    for mid in hosts:
        first = spec.link_between(client_tier, mid.tier)
        if mid.tier == client_tier or first is None:
            continue
        for last in hosts:
            second = spec.link_between(mid.tier, last.tier)
            outward = TIERS.index(client_tier) < TIERS.index(mid.tier) < TIERS.index(last.tier)
            if not outward or second is None:
                continue
            hop = _Hop(local[0].name, mid.name, last.name, first.name, second.name)
            plans += _two_split_plans(model, hop, n_stages, feature_codecs, spec)
    return plans


@dataclass(frozen=True)
class _Hop:
    """A three-tier plan's nodes and links."""

    head: str
    mid: str
    last: str
    link: str
    link2: str


def _two_split_plans(
    model: str, hop: _Hop, n: int, codecs: tuple[str, ...], spec: ClusterSpec
) -> list[Plan]:
    tiers = tuple(spec.node(name).tier for name in (hop.head, hop.mid, hop.last))
    return [
        Plan(
            f"split@{a}/{hop.mid}/{c1}+{b}/{hop.last}/{c2}",
            "classify",
            model,
            hop.head,
            hop.mid,
            a,
            n,
            c1,
            hop.link,
            tiers,
            "features",
            split2=b,
            codec2=c2,
            link2=hop.link2,
            last_node=hop.last,
        )
        for a in range(1, n - 1)
        for b in range(a + 1, n)
        for c1 in codecs
        for c2 in codecs
    ]


@dataclass(frozen=True)
class _Crossing:
    """A split plan's two nodes, the link between them, and the tiers it runs on."""

    head: str
    tail: str
    link: str
    tiers: tuple[Tier, ...]


def _offload_plans(
    model: str, tail: str, tier: Tier, n_stages: int, link: str, codecs: tuple[str, ...]
) -> list[Plan]:
    """The whole model on ``tail``: the input crosses the link, in each input codec."""
    return [
        Plan(
            f"{tail}/{codec}",
            "classify",
            model,
            None,
            tail,
            0,
            n_stages,
            codec,
            link,
            (tier,),
            "raw",
        )
        for codec in codecs
    ]


def _split_plans(
    model: str,
    crossing: _Crossing,
    n_stages: int,
    feature_codecs: tuple[str, ...],
    learned_codecs: dict[int, tuple[str, ...]],
) -> list[Plan]:
    """Head stages on the client's tier, the rest on the far node, at every split point."""
    c = crossing
    return [
        Plan(
            f"split@{split}/{c.tail}/{codec}",
            "classify",
            model,
            c.head,
            c.tail,
            split,
            n_stages,
            codec,
            c.link,
            c.tiers,
            "features",
        )
        for split in range(1, n_stages)
        for codec in (*feature_codecs, *learned_codecs.get(split, ()))
    ]


def variant_plans(
    spec: ClusterSpec,
    base: str,
    variant: str,
    hosts: list[str],
    n_stages: int,
    client_tier: Tier,
    input_codecs: tuple[str, ...] = DEFAULT_INPUT_CODECS,
) -> list[Plan]:
    """A variant of ``base`` run whole on one node: locally, or offloaded with an input codec.

    Plan ids carry the variant's tag first: ``int8:local@device``, ``int8:edge/jpeg90``.
    Split plans are left to the base model: a pruned variant's features have other
    shapes, so the base's feature-codec measurements would not describe them."""
    tag = variant.split(":", 1)[1]
    plans = []
    for node in spec.nodes:
        if node.name not in hosts:
            continue
        if node.tier == client_tier:
            plans.append(
                Plan(
                    f"{tag}:local@{node.name}",
                    "classify",
                    variant,
                    node.name,
                    None,
                    n_stages,
                    n_stages,
                    None,
                    None,
                    (client_tier,),
                    "nothing",
                    base,
                )
            )
            continue
        link = spec.link_between(client_tier, node.tier)
        if link is None:
            continue
        for codec in input_codecs:
            plans.append(
                Plan(
                    f"{tag}:{node.name}/{codec}",
                    "classify",
                    variant,
                    None,
                    node.name,
                    0,
                    n_stages,
                    codec,
                    link.name,
                    (node.tier,),
                    "raw",
                    base,
                )
            )
    return plans


def chat_plans(spec: ClusterSpec, models: list[str], client_tier: Tier) -> list[Plan]:
    """Every node that hosts one of ``models`` and can be reached from ``client_tier``."""
    return _one_node_plans(spec, models, client_tier, "chat", "prompt")


def whole_plans(
    spec: ClusterSpec, models: list[str], client_tier: Tier, task: WholeTask, sends: Sends
) -> list[Plan]:
    """A model called whole, on each node that hosts it: on the client's own tier, or
    across the link to that node's tier. ``sends`` is what a remote plan sends: ``raw``
    for an image, ``prompt`` for text (privacy treats it like a chat prompt)."""
    return _one_node_plans(spec, models, client_tier, task, sends)


def _one_node_plans(
    spec: ClusterSpec, models: list[str], client_tier: Tier, task: Task, sends: Sends
) -> list[Plan]:
    plans = []
    for node in spec.nodes:
        for model in models:
            if model not in node.models:
                continue
            link = None if node.tier == client_tier else spec.link_between(client_tier, node.tier)
            if node.tier != client_tier and link is None:
                continue
            plans.append(
                Plan(
                    f"{task}@{node.name}/{model}",
                    task,
                    model,
                    None,
                    node.name,
                    0,
                    0,
                    None,
                    link.name if link else None,
                    (node.tier,),
                    "nothing" if link is None else sends,
                )
            )
    return plans
