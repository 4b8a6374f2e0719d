"""``tierwise profile``, and the gateway's background profiling: measure what the planner predicts.

Two kinds of measurement, both stored as :class:`~tierwise.placement.profiles.Profiles`:

- **per node** (over HTTP, from the node's own tier): each stage of each staged model,
  timed by the node itself (``X-Tierwise-Compute-Ms``, EMULATED slow-down included);
  each chat model's prefill and decode speed and fixed overhead; each model called whole
  (embeddings, VQA): its compute per call and the bytes of its answer;
- **per model** (in this process): for every split point and codec, the bytes on the
  wire, the encode + decode time, and top-1 agreement with the unsplit fp32 model on
  real photos that ship with scikit-image and matplotlib;
- **quality** (in this process, only given the shared data folder): each plan shape's
  top-1 accuracy on labelled photos, variants included (:mod:`.accuracy_profile`).
  Without the photos a plan's accuracy stays unknown and the planner's quality floor
  says it cannot judge; the gateway's background profiling never measures it (it would take
  minutes), ``tierwise profile --data`` does.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tierwise.codecs.codec_file import read_header
from tierwise.codecs.found import model_codecs
from tierwise.codecs.registry import get_codec
from tierwise.config import ClusterSpec, ModelSpec
from tierwise.datasets.imagenet_samples import find as find_labelled
from tierwise.datasets.imagenet_samples import labelled_photos
from tierwise.datasets.photos import jpeg_bytes, photo_set
from tierwise.gateway.accuracy_profile import profile_accuracy
from tierwise.gateway.whole.calls import NodeReply, answer_bytes
from tierwise.models.base import StagedModel
from tierwise.models.kinds import WHOLE_ROLES, BuildContext, hosted_models, kind_of, vision_kind
from tierwise.models.onnx_variant import OnnxVariant
from tierwise.models.variant_file import find_variants, served_name
from tierwise.placement.plans import DEFAULT_FEATURE_CODECS, DEFAULT_INPUT_CODECS, ORIGINAL
from tierwise.placement.profiles import (
    ANY_NODE,
    CALL_MS,
    MODEL_ACCURACY,
    OUT_BYTES,
    Profiles,
    codec_metric,
    stage_metric,
)
from tierwise.runtime.model_codecs import load_model_codecs
from tierwise.runtime.node_client import NodeClient
from tierwise.runtime.state import ClusterState

Progress = Callable[[str], None]
SHORT_PROMPT = "Hi!"
LONG_PROMPT = " ".join(["Summarise the following notes about bridges and rivers."] * 24)


# ---------------------------------------------------------------- per node


async def profile_nodes(
    state: ClusterState,
    token: str,
    profiles: Profiles,
    progress: Progress,
    repeats: int = 3,
    only_missing: bool = False,
) -> None:
    """Each node's models; the gateway's own tier first, since its local plans are the
    ones a gateway profiling in the background can serve soonest."""
    client_tier = state.spec.gateway.tier if state.spec.gateway else "device"
    nodes = sorted(state.spec.nodes, key=lambda n: n.tier != client_tier)
    for node in nodes:
        async with NodeClient(state.node_url(node.name), token, timeout=300) as client:
            info = await client.info()
            for model in info["models"]:
                # Variants (from `tierwise optimize`) are not in the spec; nodes list them.
                spec = state.spec.models.get(model["name"])
                if only_missing and _node_profiled(node.name, model, spec, profiles):
                    continue
                if "stages" in model:
                    await _profile_stages(client, node.name, model, profiles, repeats)
                elif spec is not None and kind_of(spec).role == "chat":
                    await _profile_chat(client, node.name, model["name"], profiles)
                elif spec is not None and kind_of(spec).role in WHOLE_ROLES:
                    await _profile_whole(client, node.name, model, kind_of(spec).role, profiles)
                progress(f"profiled {model['name']} on {node.name}")


async def _profile_stages(
    client: NodeClient, node: str, model: dict[str, Any], profiles: Profiles, repeats: int
) -> None:
    for stage in model["stages"]:
        x = np.zeros((1, *stage["input_shape"]), dtype=np.float32)
        i = stage["index"]
        await client.run_stages(model["name"], x, i, i + 1)  # warm-up
        times = [
            (await client.run_stages(model["name"], x, i, i + 1)).compute_ms for _ in range(repeats)
        ]
        profiles.set(node, model["name"], stage_metric(i), statistics.median(times), repeats)


_FREE_TOK_S = 1e6


async def _profile_chat(client: NodeClient, node: str, model: str, profiles: Profiles) -> None:
    """Two prompt lengths separate the fixed overhead from the prefill rate.

    The short prompt runs twice and its faster first-token time counts: the first call on
    a fresh node pays one-off costs (page faults, buffer allocation). Decode is the median
    of the three runs' rates. What noise remains is left to the planner's exploration
    (``ObjectiveWeights.explore``), which tries a near-tied node until live answers have
    measured it.
    """
    first = await _timed_stream(client, model, SHORT_PROMPT, 16)
    again = await _timed_stream(client, model, SHORT_PROMPT, 16)
    long = await _timed_stream(client, model, LONG_PROMPT, 16)
    short = min(first, again, key=lambda r: r["ttft"])
    d_tokens = long["prompt_tokens"] - short["prompt_tokens"]
    d_time = max(long["ttft"] - short["ttft"], 1e-4)
    # A remote API may count prompts its own way (or not grow with them): its first-token
    # time is then all overhead, and prefill is taken as free rather than dividing by 0.
    prefill = d_tokens / d_time if d_tokens > 0 else _FREE_TOK_S
    overhead = max(0.0, short["ttft"] - short["prompt_tokens"] / prefill)
    rates = [r["decode_tok_s"] for r in (first, again, long) if r["decode_tok_s"] > 0]
    decode = statistics.median(rates) if rates else _FREE_TOK_S
    profiles.set(node, model, "llm:prefill_tok_s", prefill)
    profiles.set(node, model, "llm:decode_tok_s", decode, samples=max(len(rates), 1))
    profiles.set(node, model, "llm:overhead_ms", overhead * 1e3)
    if not profiles.has(node, model, "llm:completion_tokens"):
        profiles.set(node, model, "llm:completion_tokens", 64.0)


async def _timed_stream(
    client: NodeClient, model: str, prompt: str, max_tokens: int
) -> dict[str, float]:
    started = time.perf_counter()
    first = last = None
    usage = None
    async for chunk in client.chat_stream(
        model, [{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0
    ):
        now = time.perf_counter()
        if chunk.text:
            first = first or now
            last = now
        usage = chunk.usage or usage
    assert usage is not None
    ttft = (first or time.perf_counter()) - started
    n = usage.completion_tokens
    decode = (n - 1) / (last - first) if first and last and last > first and n > 1 else 0.0
    return {"ttft": ttft, "prompt_tokens": usage.prompt_tokens, "decode_tok_s": decode}


async def _profile_whole(
    client: NodeClient, node: str, entry: dict[str, Any], role: str, profiles: Profiles
) -> None:
    """A model called whole: compute per call (the node's own time, median of three after
    a warm-up) and the wire bytes of one answer; a VQA card's accuracy is its quality."""
    name, ask = entry["name"], _WHOLE_PROBES[role]
    await ask(client, name)  # warm-up
    replies = [await ask(client, name) for _ in range(3)]
    times = [float(r.ext.get("compute_ms", 0.0)) for r in replies]
    profiles.set(node, name, CALL_MS, statistics.median(times), len(times))
    profiles.set(ANY_NODE, name, OUT_BYTES, answer_bytes(replies[-1].transfer, 1))
    accuracy = (entry.get("measured") or {}).get("test_accuracy")
    if accuracy is not None:
        profiles.set(ANY_NODE, name, MODEL_ACCURACY, float(accuracy))


def _probe_picture() -> bytes:
    """An easy-vqa-like picture: one red circle on white, 64×64, as PNG."""
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill="red")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


_WHOLE_PROBES: dict[str, Callable[[NodeClient, str], Awaitable[NodeReply]]] = {
    "embedding": lambda client, model: client.embeddings(model, [SHORT_SENTENCE]),
    "vqa": lambda client, model: client.vqa(model, _probe_picture(), "what color is the shape?"),
}
SHORT_SENTENCE = "A bridge crosses the river near the old mill."


# ---------------------------------------------------------------- per model


def profile_codecs(
    model: StagedModel,
    profiles: Profiles,
    progress: Progress,
    photos: int = 12,
    input_codecs: tuple[str, ...] = DEFAULT_INPUT_CODECS,
    feature_codecs: tuple[str, ...] = DEFAULT_FEATURE_CODECS,
) -> None:
    shots = photo_set(photos)
    images = [model.preprocess(image) for _, image in shots]
    # An `original` plan sends the upload as it is; until uploads teach it, expect photos
    # like these as a camera would send them (JPEG at quality 90, full size).
    upload = statistics.mean(len(jpeg_bytes(image)) for _, image in shots)
    profiles.set(ANY_NODE, model.name, codec_metric(ORIGINAL, 0, "bytes"), upload, len(shots))
    n = len(model.stages)
    reference = [int(model.run_all(x).argmax()) for x in images]
    logits = model.run_all(images[0])
    out = get_codec("raw").to_wire(logits, {"model": model.name, "start": 0, "end": n})
    profiles.set(ANY_NODE, model.name, "out:bytes", len(out))
    for codec in input_codecs:
        _measure(model, profiles, codec, 0, [(x, x) for x in images], reference)
    heads = [(x, x) for x in images]  # (features at the current split, original input)
    for split in range(1, n if feature_codecs else 1):
        heads = [(model.run_stages(f, split - 1, split), x) for f, x in heads]
        for codec in feature_codecs:
            _measure(model, profiles, codec, split, heads, reference)
        progress(f"profiled codecs of {model.name} at split {split}")


def _measure(
    model: StagedModel,
    profiles: Profiles,
    codec_name: str,
    split: int,
    inputs: list[tuple[np.ndarray, np.ndarray]],
    reference: list[int],
) -> None:
    from tierwise.codecs import wire
    from tierwise.codecs.registry import decode_message

    codec = get_codec(codec_name)
    sizes, times, agree = [], [], 0
    for (features, _), expected in zip(inputs, reference, strict=True):
        started = time.perf_counter()
        payload = codec.to_wire(features)
        restored = decode_message(wire.decode_tensor(payload))
        times.append((time.perf_counter() - started) * 1e3)
        sizes.append(len(payload))
        agree += int(model.run_stages(restored, split, len(model.stages)).argmax()) == expected
    key = (ANY_NODE, model.name)
    profiles.set(*key, codec_metric(codec_name, split, "bytes"), statistics.mean(sizes), len(sizes))
    profiles.set(*key, codec_metric(codec_name, split, "ms"), statistics.median(times), len(times))
    profiles.set(
        *key, codec_metric(codec_name, split, "agreement"), agree / len(inputs), len(inputs)
    )


def missing_codec_profiles(spec: ClusterSpec, profiles: Profiles) -> list[str]:
    """Staged models hosted somewhere whose codec profile is not stored yet."""
    return [
        name
        for name in hosted_models(spec, "staged-vision")
        if not profiles.has(ANY_NODE, name, "out:bytes")
    ]


def _node_profiled(
    node: str, entry: dict[str, Any], spec: ModelSpec | None, profiles: Profiles
) -> bool:
    if "stages" in entry:
        metric = stage_metric(0)
    elif spec is not None:
        metric = _NODE_METRIC.get(kind_of(spec).role, CALL_MS)
    else:
        return True  # nothing this profiler knows how to measure
    return profiles.has(node, entry["name"], metric)


def missing_node_profiles(spec: ClusterSpec, profiles: Profiles) -> bool:
    for node in spec.nodes:
        for name in node.models:
            role = kind_of(spec.models[name]).role
            metric = _NODE_METRIC.get(role, CALL_MS)
            if not profiles.has(node.name, name, metric):
                return True
    return False


#: the metric whose absence means a node's model is not profiled yet, by role
_NODE_METRIC = {"staged-vision": stage_metric(0), "chat": "llm:decode_tok_s"}


def profile_cluster(
    state: ClusterState,
    token: str,
    profiles: Profiles,
    progress: Progress,
    only_missing: bool = False,
    photos: int = 12,
    quality: QualityData | None = None,
) -> None:
    """Measure nodes and codecs; with ``only_missing``, only what has no profile yet;
    with ``quality``, each plan's accuracy too."""
    if not only_missing or missing_node_profiles(state.spec, profiles):
        asyncio.run(profile_nodes(state, token, profiles, progress, only_missing=only_missing))
    names = (
        missing_codec_profiles(state.spec, profiles)
        if only_missing
        else [n for n, m in state.spec.models.items() if kind_of(m).role == "staged-vision"]
    )
    client_tier = state.spec.gateway.tier if state.spec.gateway else "device"
    local = {m for n in state.spec.nodes_in(client_tier) for m in n.models}
    for name in names:
        # Feature codecs matter only where the client's tier can run the head stages.
        features = DEFAULT_FEATURE_CODECS if name in local else ()
        model = _staged_model(state.spec, name)
        profile_codecs(model, profiles, progress, photos=photos, feature_codecs=features)
    if quality is not None:
        profile_quality(state.spec, quality, profiles, progress)


@dataclass(frozen=True)
class QualityData:
    """Where the labelled photos are (the shared data folder), and how many to use.

    ``files`` keeps only the photos of those names: a benchmark measures quality on one
    part of the photos and serves the others, so nothing it scores was profiled on."""

    data: Path
    photos: int | None = None
    files: frozenset[str] | None = None


def profile_quality(
    spec: ClusterSpec, quality: QualityData, profiles: Profiles, progress: Progress
) -> None:
    """Each staged model's plans' accuracy on its labelled set, and its variants'.

    Feature codecs are measured where the client's tier can run head stages, as above."""
    client_tier = spec.gateway.tier if spec.gateway else "device"
    local = {m for n in spec.nodes_in(client_tier) for m in n.models}
    for name in hosted_models(spec, "staged-vision"):
        kind = vision_kind(spec.models[name])
        assert kind is not None
        folder = find_labelled(quality.data, kind.labelled_set) if kind.labelled_set else None
        if folder is None:
            progress(f"no labelled photos for {name} under {quality.data}: quality unknown")
            continue
        photos = labelled_photos(folder, quality.photos)
        if quality.files is not None:
            photos = [p for p in photos if p.file in quality.files]
        model = _staged_model(spec, name)
        load_model_codecs(spec, name)
        codecs = _quality_codecs(spec, name, len(model.stages), name in local)
        profile_accuracy(model, photos, profiles, codecs)
        progress(f"measured the accuracy of {name}'s plans on {len(photos)} labelled photos")
        if spec.variants_dir is not None:
            for path, card in find_variants(spec.variants_dir, name):
                variant = OnnxVariant(served_name(card), path, threads=os.cpu_count() or 1)
                inputs: dict[int, tuple[str, ...]] = {0: DEFAULT_INPUT_CODECS}
                profile_accuracy(variant, photos, profiles, inputs, reference=model, batch=1)
                progress(f"measured the accuracy of {variant.name}'s plans")


def _quality_codecs(
    spec: ClusterSpec, name: str, n_stages: int, head_here: bool
) -> dict[int, tuple[str, ...]]:
    """{split: codecs} of every plan of ``name``: input codecs, and where the client's tier
    runs the head, every feature codec at every split and each learned one at its own."""
    codecs: dict[int, tuple[str, ...]] = {0: DEFAULT_INPUT_CODECS}
    if not head_here:
        return codecs
    for split in range(1, n_stages):
        codecs[split] = DEFAULT_FEATURE_CODECS
    for path in model_codecs(spec, name):
        header = read_header(path)
        codecs[header.split] = (*codecs.get(header.split, ()), header.name)
    return codecs


def _staged_model(spec: ClusterSpec, name: str) -> StagedModel:
    """The model in this process, to measure codecs on (learned ones bring their cards)."""
    kind = vision_kind(spec.models[name])
    assert kind is not None, f"{name} is not a staged vision model"
    return kind.build(name, spec.models[name], BuildContext(threads=os.cpu_count() or 1, env={}))
