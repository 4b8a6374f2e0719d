"""Classifying a photo: the plans of a staged model, run through nodes and links."""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from tierwise.codecs import wire
from tierwise.codecs.codec_file import read_header
from tierwise.codecs.found import codec_field, model_codecs
from tierwise.codecs.registry import decode_message, get_codec
from tierwise.errors import ConfigError, InputError, NotFoundError, TierwiseError, UpstreamError
from tierwise.gateway.keys import Caller
from tierwise.gateway.pipeline import Pipeline
from tierwise.gateway.recorder import Pending, Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.models.base import top_k as ranked_classes
from tierwise.models.kinds import vision_kind
from tierwise.placement.cost import PlanTable, build_vision_table
from tierwise.placement.costing import Measured, cost_bound
from tierwise.placement.planner import decide
from tierwise.placement.plans import (
    ORIGINAL,
    Plan,
    led_by,
    three_tier_plans,
    variant_plans,
    vision_plans,
)
from tierwise.placement.profiles import ANY_NODE, codec_metric
from tierwise.runtime.images import decode_image_async
from tierwise.runtime.node_client import PayloadReply

TABLE_REFRESH_S = 1.0
#: The model name that lets the planner pick the classifier too, among those that share
#: one label set (and so one measure of accuracy): ``POST /v1/vision/classify?model=auto``.
AUTO = "auto"


@dataclass(frozen=True)
class VisionModel:
    name: str
    n_stages: int
    input_size: int
    plans: list[Plan]
    preprocess: Callable[[Image.Image], np.ndarray]
    labels: Callable[[], list[str]]


@dataclass(frozen=True)
class AutoClassifier:
    """Every plan of several classifiers in one table, each id led by its model's name
    (``efficientnet-lite2:cloud/jpeg90``), so the quality floor is judged against the best
    of them: a request is not answered by a model more than ``max_quality_loss`` below
    the best one it could have had."""

    name: str
    members: dict[str, VisionModel]
    plans: list[Plan]


class _Inputs:
    """One decoded photo, preprocessed once for each model a plan runs it through."""

    def __init__(self, models: dict[str, VisionModel], image: Image.Image) -> None:
        self._models, self._image = models, image
        self._done: dict[str, np.ndarray] = {}

    def of(self, plan: Plan) -> np.ndarray:
        name = plan.profile_model
        if name not in self._done:
            self._done[name] = self._models[name].preprocess(self._image)
        return self._done[name]


class VisionService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._shared = pipeline.shared
        self.models: dict[str, VisionModel] = {}
        self.auto: AutoClassifier | None = None
        self._tables: dict[str, tuple[int, float, PlanTable]] = {}

    async def discover(self) -> None:
        """Learn each staged model's stages from a node that hosts it (the local one first),
        and the variants of it that nodes serve (`tierwise optimize` made them)."""
        spec, tier = self._shared.spec, self._shared.gw.tier
        infos: dict[str, dict[str, Any]] = {}
        for node in sorted(spec.nodes, key=lambda n: n.tier != tier):
            with contextlib.suppress(UpstreamError):
                infos[node.name] = await self._shared.nodes.client(node.name).info()
        for name, model in spec.models.items():
            kind = vision_kind(model)
            if kind is None:
                continue
            learned = self._learned_codecs(name)
            entry = next(
                (m for info in infos.values() for m in info["models"] if m["name"] == name), None
            )
            if entry is None:
                continue
            n, size = len(entry["stages"]), entry["stages"][0]["input_shape"][1]
            plans = vision_plans(spec, name, n, tier, learned_codecs=learned)
            plans += three_tier_plans(spec, name, n, tier)
            plans += self._variant_plans(name, infos)
            self.models[name] = VisionModel(name, n, size, plans, *kind.inputs(model, size))
        self.auto = self._auto_classifier()

    def _auto_classifier(self) -> AutoClassifier | None:
        """``auto`` over the classifiers measured on one labelled set, when exactly one
        set has two or more of them (with two label sets, ``auto`` would be ambiguous)."""
        groups: dict[str, list[str]] = {}
        for name in self.models:
            kind = vision_kind(self._shared.spec.models[name])
            if kind is not None and kind.labelled_set:
                groups.setdefault(kind.labelled_set, []).append(name)
        shared = [names for names in groups.values() if len(names) > 1]
        if len(shared) != 1:
            return None
        members = {name: self.models[name] for name in shared[0]}
        plans = [p for name, vm in members.items() for p in led_by(name, vm.plans)]
        return AutoClassifier(AUTO, members, plans)

    def _variant_plans(self, base: str, infos: dict[str, dict[str, Any]]) -> list[Plan]:
        """Plans for each variant of ``base`` some node serves; its card seeds its quality."""
        hosts: dict[str, list[str]] = {}
        entries: dict[str, dict[str, Any]] = {}
        for node, info in infos.items():
            for entry in info["models"]:
                if entry.get("variant_of") == base:
                    hosts.setdefault(entry["name"], []).append(node)
                    entries[entry["name"]] = entry
        plans: list[Plan] = []
        profiles, tier = self._shared.profiles, self._shared.gw.tier
        for variant, entry in sorted(entries.items()):
            agreement = (entry.get("measured") or {}).get("agreement")
            if agreement is not None and not profiles.has(ANY_NODE, variant, "model:agreement"):
                count = int((entry.get("measured") or {}).get("n") or 1)
                profiles.set(ANY_NODE, variant, "model:agreement", float(agreement), count)
            n = len(entry["stages"])
            plans += variant_plans(self._shared.spec, base, variant, hosts[variant], n, tier)
        return plans

    def _learned_codecs(self, name: str) -> dict[int, tuple[str, ...]]:
        """The model's trained codecs by split; their cards seed what the planner knows."""
        spec = self._shared.spec
        by_split: dict[int, tuple[str, ...]] = {}
        for i, path in enumerate(model_codecs(spec, name)):
            try:
                header = read_header(path)
            except InputError as exc:
                raise ConfigError(f"{codec_field(spec, name, i)}: {exc}") from exc
            by_split[header.split] = (*by_split.get(header.split, ()), header.name)
            measured = {
                "bytes": header.measured("wire_bytes"),
                "agreement": header.measured("agreement"),
                "ms": (header.measured("encode_ms") or 0.0) + (header.measured("decode_ms") or 0.0),
            }
            count = int(header.measured("n") or 1)
            for what, value in measured.items():
                metric = codec_metric(header.name, header.split, what)
                if value is not None and not self._shared.profiles.has(ANY_NODE, name, metric):
                    self._shared.profiles.set(ANY_NODE, name, metric, value, count)
        return by_split

    async def classify(
        self, caller: Caller, image_bytes: bytes, model: str, top_k: int, options: RequestOptions
    ) -> Served:
        policy = self._pipeline.policy_for(caller, options)
        pending = Pending.new(caller, "classify", model, policy, options.run_id)
        try:
            vm = self._model(model)
            inputs = _Inputs(self.models, await decode_image_async(image_bytes))
            executed = await self._pipeline.run(
                pending,
                self.table(vm),
                policy,
                options.pinned_plan,
                lambda plan, _: self._run_on(plan, inputs, image_bytes),
                self._bound,
            )
        except TierwiseError as exc:
            await self._shared.recorder.failed(pending, exc)
            raise
        plan = executed.plan
        logits = np.asarray(executed.result).reshape(-1)
        ranked = ranked_classes(logits, self.models[plan.profile_model].labels(), top_k)
        # `auto` names the model that answered; a named model stays as it was asked for
        answered = plan.model if model == AUTO else model
        body = {"model": answered, "predictions": [p.__dict__ for p in ranked]}
        return await self._shared.recorder.served(pending, executed, body)

    def table(self, vm: VisionModel | AutoClassifier) -> PlanTable:
        """The model's plan table, rebuilt at most once a second as profiles learn."""
        profiles, now = self._shared.profiles, time.monotonic()
        cached = self._tables.get(vm.name)
        if cached is not None:
            version, built, table = cached
            if version == profiles.version or now - built < TABLE_REFRESH_S:
                return table
        table = build_vision_table(self._shared.spec, vm.plans, profiles)
        self._tables[vm.name] = (profiles.version, now, table)
        return table

    def current_plans(self, model: str) -> dict[str, Any]:
        """Every plan of a vision model as the planner sees it now (default policy)."""
        table = self.table(self._model(model))
        live = self._shared.live.state(table)
        policy = self._shared.gw.policy
        decision = decide(table, live, policy, budget_ok=True)
        links = {
            name: {"bandwidth": est.bandwidth, "rtt": est.rtt, "up": est.is_up()}
            for name, est in self._shared.live.links.items()
        }
        plans = decision.explain(policy, True, live, limit=None)
        return {"model": model, "links": links, "plans": plans}

    def _model(self, name: str) -> VisionModel | AutoClassifier:
        if name == AUTO and self.auto is not None:
            return self.auto
        vm = self.models.get(name)
        if vm is None:
            known = sorted(self.models) + ([AUTO] if self.auto else [])
            raise NotFoundError(f"no vision model {name!r}; models: {known}", param="model")
        return vm

    async def _run_on(
        self, plan: Plan, inputs: _Inputs, upload: bytes
    ) -> tuple[np.ndarray, Measured]:
        # Resizing a large photo takes a while: off the event loop, like its decoding.
        return await self._run(plan, await run_in_threadpool(inputs.of, plan), upload)

    async def _run(
        self, plan: Plan, x: np.ndarray, upload: bytes = b""
    ) -> tuple[np.ndarray, Measured]:
        """Head stages on the local node (if any), then the codec, then the tail remotely
        (which, in a three-tier plan, forwards to the last node itself)."""
        m = Measured()
        n, model = plan.n_stages, plan.model
        if plan.split == n:
            assert plan.head_node is not None
            reply = await self._stage_call(plan.head_node, model, wire.encode_tensor(x), 0, n, None)
            m.head_compute_s = reply.compute_ms / 1e3
            m.measured_compute_joules = reply.rapl_joules
            return _logits(reply), m
        assert plan.tail_node is not None and plan.codec is not None
        if plan.codec == ORIGINAL:
            return await self._run_original(plan, upload, m)
        head_joules: float | None = 0.0  # no head stage: nothing to measure there
        if plan.split == 0:
            payload = await run_in_threadpool(get_codec(plan.codec).to_wire, x)
        else:
            assert plan.head_node is not None
            head = await self._stage_call(
                plan.head_node, model, wire.encode_tensor(x), 0, plan.split, None, plan.codec
            )
            m.head_compute_s, payload, head_joules = (
                head.compute_ms / 1e3,
                head.payload,
                head.rapl_joules,
            )
        metric = codec_metric(plan.codec, plan.split, "bytes")
        self._shared.profiles.observe(ANY_NODE, plan.profile_model, metric, len(payload))
        if plan.split2 is not None:
            return await self._run_onwards(plan, payload, m, head_joules)
        reply = await self._stage_call(plan.tail_node, model, payload, plan.split, n, plan.link)
        m.tail_compute_s = reply.compute_ms / 1e3
        if head_joules is not None and reply.rapl_joules is not None:
            m.measured_compute_joules = head_joules + reply.rapl_joules
        m.bytes_up, m.bytes_down = reply.transfer.bytes_up, reply.transfer.bytes_down
        return _logits(reply), m

    async def _run_original(
        self, plan: Plan, upload: bytes, m: Measured
    ) -> tuple[np.ndarray, Measured]:
        """The uploaded bytes, unchanged, to the tail node, which decodes them itself."""
        assert plan.tail_node is not None
        metric = codec_metric(ORIGINAL, 0, "bytes")
        self._shared.profiles.observe(ANY_NODE, plan.profile_model, metric, len(upload))
        reply = await self._stage_call(
            plan.tail_node, plan.model, upload, 0, plan.n_stages, plan.link, image=True
        )
        if reply.input_sha256 != hashlib.sha256(upload).hexdigest():
            raise UpstreamError(f"{plan.tail_node} received other bytes than were uploaded")
        m.tail_compute_s, m.measured_compute_joules = reply.compute_ms / 1e3, reply.rapl_joules
        m.bytes_up, m.bytes_down = reply.transfer.bytes_up, reply.transfer.bytes_down
        return _logits(reply), m

    async def _run_onwards(
        self, plan: Plan, payload: bytes, m: Measured, head_joules: float | None
    ) -> tuple[np.ndarray, Measured]:
        """A three-tier plan after its head: the middle node runs its stages and forwards
        ``codec2`` over the second link to the last node, whose answer it relays."""
        assert plan.tail_node is not None and plan.split2 is not None
        assert plan.codec2 is not None and plan.last_node is not None
        then = (plan.last_node, plan.n_stages)
        reply = await self._stage_call(
            plan.tail_node, plan.model, payload, plan.split, plan.split2, plan.link,
            plan.codec2, then,
        )  # fmt: skip
        hop = reply.next_hop
        if hop is None:
            raise UpstreamError(f"{plan.tail_node} did not forward to {plan.last_node}")
        m.tail_compute_s, m.last_compute_s = reply.compute_ms / 1e3, hop.compute_ms / 1e3
        m.bytes_up, m.bytes_down = reply.transfer.bytes_up, reply.transfer.bytes_down
        m.bytes2_up, m.bytes2_down = hop.transfer.bytes_up, hop.transfer.bytes_down
        parts = (head_joules, reply.rapl_joules, hop.rapl_joules)
        if all(j is not None for j in parts):
            m.measured_compute_joules = sum(j or 0.0 for j in parts)
        shared = self._shared
        shared.live.node_served(plan.last_node, hop.compute_ms / 1e3)
        shared.profiles.observe_stages(
            plan.last_node, plan.model, plan.split2, plan.n_stages, hop.compute_ms
        )
        t = hop.transfer
        assert plan.link2 is not None
        shared.live.observe(plan.link2, t.bytes_up + t.bytes_down, t.seconds, hop.compute_ms / 1e3)
        return _logits(reply), m

    async def _stage_call(
        self,
        node: str,
        model: str,
        payload: bytes,
        start: int,
        end: int,
        link: str | None,
        out_codec: str = "raw",
        then: tuple[str, int] | None = None,
        image: bool = False,
    ) -> PayloadReply:
        """One stage call; what it measured teaches the node's profile and the link."""
        shared = self._shared
        kind = _image_type(payload) if image else wire.CONTENT_TYPE
        call = shared.nodes.client(node).run_payload(
            model, payload, start, end, out_codec, then, kind
        )
        reply: PayloadReply = await shared.nodes.call(node, link, call)
        compute_s = reply.compute_ms / 1e3
        shared.live.node_served(node, compute_s)
        shared.profiles.observe_stages(node, model, start, end, reply.compute_ms)
        if link is not None:
            t = reply.transfer
            # a forwarded call's time includes the second hop, which is not this link's
            behind = compute_s + (reply.next_hop.transfer.seconds if reply.next_hop else 0.0)
            shared.live.observe(link, t.bytes_up + t.bytes_down, t.seconds, behind)
        return reply

    def _bound(self, plan: Plan, timeout: float) -> float:
        profiles = self._shared.profiles
        out = profiles.get(ANY_NODE, plan.profile_model, "out:bytes") or 8192
        sent = 0.0
        if plan.codec is not None:
            metric = codec_metric(plan.codec, plan.split, "bytes")
            sent = profiles.get(ANY_NODE, plan.profile_model, metric) or 0.0
        return cost_bound(
            self._shared.spec, plan, timeout, int(2 * sent + 4096), int(2 * out + 4096)
        )


def _image_type(data: bytes) -> str:
    """The upload's media type (the node reads an ``image/*`` body as an image file)."""
    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        return f"image/{(image.format or 'octet-stream').lower()}"


def _logits(reply: PayloadReply) -> np.ndarray:
    return decode_message(wire.decode_tensor(reply.payload))
