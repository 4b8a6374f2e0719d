"""``tierwise bench placement``: where should a photo be classified, link speed by link speed,
and at what accuracy?

On the embedded three-tier cluster (device EMULATED 4x slower than the edge; EfficientNet-
Lite0 on the device, Lite1 on the edge, Lite2 in the cloud, plus the device's int8 variant
and learned codec when `tierwise assets` made them), with labelled ImageNet photos:

1. each plan's accuracy is measured on half of the photos (the *profile* half), before the
   cluster starts, and stored where the gateway reads its profiles;
2. at each bandwidth step of the device's links, a set of fixed plans (pinned, run with
   ``quality: any``) and ``auto`` under each policy of
   :mod:`~tierwise.bench.placement_policies` classify photos of the *other* half, all
   through the same gateway (``model=auto``: it may pick the model too), interleaved;
3. per policy and rate: the best fixed plan that meets the policy's floor, and auto's
   regret against it;
4. at each step where that best plan changes, a step change of the link, both ways,
   counting requests until auto runs the plan it settles on at the new rate;
5. the chat workload only where tiers run different chat models (else it says so).

Writes ``placement.json``, ``placement.md`` and ``placement.png`` to the results folder.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from tierwise.bench import placement_policies as pol
from tierwise.bench.placement_report import markdown, plot, print_summary
from tierwise.bench.report import environment, write_results
from tierwise.config import TIERS, ClusterSpec
from tierwise.datasets.imagenet_samples import LabelledPhoto, labelled_photos
from tierwise.datasets.imagenet_samples import find as find_labelled
from tierwise.errors import InputError
from tierwise.gateway.live import NODE_BACKOFF_S
from tierwise.models.kinds import hosted_models
from tierwise.net.link_client import LinkClient
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import ClusterState, read_api_key, resolve

MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
STEPS_KBPS = [2000, 1000, 500, 300, 200, 100, 50]
DEVICE_LINKS = ("device-edge", "device-cloud")
L0, L1, L2 = MODELS
#: The fixed plans compared, where the cluster has them: each model where it lives, with
#: the uploaded bytes or a re-encode; Lite0 on the device, split to the edge, and three-tier.
FIXED_PLANS = [
    f"{L0}:local@device",
    f"{L0}:int8:local@device",
    f"{L0}:edge/original",
    f"{L0}:edge/jpeg90",
    f"{L0}:split@4/edge/q8",
    f"{L0}:split@6/edge/efficientnet-lite0-s6-q7",
    f"{L0}:split@5/edge/raw+6/cloud/raw",
    f"{L1}:edge/original",
    f"{L1}:edge/jpeg90",
    f"{L2}:cloud/original",
    f"{L2}:cloud/jpeg90",
]
WARMUP = 3
RETRIES = 3
CHANGE_BEFORE, CHANGE_AFTER = 6, 8


@dataclass
class Sample:
    plan: str
    latency_ms: float
    bytes_total: int
    usd: float
    joules: float
    correct: bool
    floor: float | None  # the floor the gateway applied (auto only)
    relaxed: list[str]


@dataclass
class Cell:
    """One (bandwidth, plan or auto policy) measurement."""

    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = [s.latency_ms for s in self.samples]
        return {
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "bytes": statistics.mean(s.bytes_total for s in self.samples),
            "usd_modelled": statistics.mean(s.usd for s in self.samples),
            "joules_modelled": statistics.mean(s.joules for s in self.samples),
            "correct": sum(s.correct for s in self.samples),
            "n": len(self.samples),
            "plans_used": dict(Counter(s.plan for s in self.samples)),
            "floors": sorted({s.floor for s in self.samples if s.floor is not None}),
            "relaxed": sum(bool(s.relaxed) for s in self.samples),
        }


class _Bench:
    def __init__(self, state: ClusterState, token: str, photos: list[Upload]) -> None:
        key = read_api_key(state.state_dir)
        self.http = httpx.Client(
            base_url=state.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        self.links = {n: LinkClient(state.links[n].control_url, token) for n in DEVICE_LINKS}
        self.photos = photos

    def close(self) -> None:
        self.http.close()
        for link in self.links.values():
            link.close()

    def set_bandwidth(self, kbps: float) -> None:
        for link in self.links.values():
            link.set(bandwidth=kbps * 1000)

    def plan_quality(self) -> dict[str, float | None]:
        """Every auto plan's measured accuracy, as the gateway's profiles hold it."""
        plans = self.http.get("/v1/plans", params={"model": "auto"}).json()["plans"]
        return {p["plan"]: p["quality"] for p in plans}

    def classify(self, photo: Upload, plan: str | None, policy: str | None) -> Sample:
        """One photo through the gateway. A pinned plan refused because a node or link
        looked down (the gateway backs off from a node for NODE_BACKOFF_S after a failed
        call) is asked again after that pause, up to RETRIES times."""
        headers = {"X-Tierwise-Plan": plan} if plan else {}
        if policy:
            headers["X-Tierwise-Policy"] = policy
        for attempt in range(RETRIES + 1):
            started = time.perf_counter()
            response = self.http.post(
                "/v1/vision/classify", params={"model": "auto"}, content=photo.data, headers=headers
            )
            latency = (time.perf_counter() - started) * 1e3
            transient = response.status_code == 404 and "cannot run now" in response.text
            if not transient or attempt == RETRIES:
                break
            time.sleep(NODE_BACKOFF_S)
        if response.status_code != 200:
            raise RuntimeError(f"{plan or 'auto'}: {response.status_code} {response.text[:300]}")
        body = response.json()
        ext, m = body["tierwise"], body["tierwise"]["measured"]
        return Sample(
            ext["plan"],
            latency,
            m["bytes_up"] + m["bytes_down"],
            m["usd_modelled"],
            m["joules_modelled"],
            body["predictions"][0]["index"] == photo.label,
            ext["quality_floor"]["floor"],
            ext["relaxed"],
        )

    def step(
        self, kbps: float, fixed: list[str], policies: list[pol.BenchPolicy], photos: list[Upload]
    ) -> dict[str, Any]:
        """Every plan and every auto on every photo, interleaved in a rotating order, so
        that drifting load on this shared machine falls on all alike."""
        self.set_bandwidth(kbps)
        for policy in policies:  # let the gateway see the new link before auto is timed
            for i in range(WARMUP):
                self.classify(photos[i % len(photos)], None, policy.header)
        runs: list[tuple[str, str | None, str | None]] = [(p, p, "quality=any") for p in fixed]
        runs += [(pol.auto_cell(p), None, p.header) for p in policies]
        cells = {name: Cell() for name, _, _ in runs}
        for i, photo in enumerate(photos):
            shift = i % len(runs)
            for name, plan, header in runs[shift:] + runs[:shift]:
                cells[name].samples.append(self.classify(photo, plan, header))
        return {"kbps": kbps, "plans": {name: c.summary() for name, c in cells.items()}}

    def step_change(
        self, before: float, after: float, policy: pol.BenchPolicy, targets: list[str]
    ) -> dict[str, Any]:
        """Requests after a link change until auto runs one of ``targets``: a plan within
        the regret target of the best qualifying one at the new rate, or its settled one."""
        self.set_bandwidth(before)
        first = [self._auto(i, policy) for i in range(CHANGE_BEFORE)]
        self.set_bandwidth(after)
        then = [self._auto(CHANGE_BEFORE + i, policy) for i in range(CHANGE_AFTER)]
        return {
            "policy": policy.name,
            "from_kbps": before,
            "to_kbps": after,
            "targets": targets,
            "plans_before": first,
            "plans_after": then,
            "requests_to_follow": pol.requests_to_follow(then, targets),
        }

    def _auto(self, i: int, policy: pol.BenchPolicy) -> str:
        return self.classify(self.photos[i % len(self.photos)], None, policy.header).plan


@dataclass(frozen=True)
class Upload:
    """A labelled photo as a camera would upload it: the file's own bytes."""

    file: str
    data: bytes
    label: int


def run_placement_bench(
    spec: ClusterSpec,
    console: Console,
    out_dir: Path,
    data: Path,
    photos: int = 20,
    steps: list[float] | None = None,
    codecs: list[Path] | None = None,
    profile_photos: int | None = None,
) -> dict[str, Any]:
    steps = steps or [float(s) for s in STEPS_KBPS]
    spec, learned = with_learned_codecs(spec, codecs or [])
    _require_models(spec)
    folder = find_labelled(data)
    if folder is None:
        raise InputError(f"--data: no imagenet-samples/labels.json under {data}", param="data")
    labelled = labelled_photos(folder)
    profiled, served = labelled[0::2], labelled[1::2]
    if profile_photos is not None:  # a quick run: fewer, spread over the classes
        profiled = profiled[:: max(1, len(profiled) // profile_photos)][:profile_photos]
    uploads = [Upload(p.file, (folder / p.file).read_bytes(), p.label) for p in served]
    spec = spec.with_free_ports()
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        accuracy = _measure_quality(spec, data, profiled, Path(tmp), console)
        policies = pol.bench_policies(accuracy, L0, L2)
        cluster = LocalCluster(spec, Path(tmp))
        with console.status("starting the cluster and its gateway (first start profiles)..."):
            state = cluster.start()
        bench = _Bench(state, cluster.token, uploads)
        try:
            extra = [f"{L0}:{plan}" for plan in learned]
            data_out = _measure(bench, console, steps, policies, photos, extra)
        finally:
            bench.close()
            cluster.stop()
    data_out.update(
        suite="placement",
        environment=environment(),
        photos_per_cell=photos,
        profiled_photos=len(profiled),
        served_photos=len(uploads),
        model_accuracy=accuracy,
        policies=[p.__dict__ for p in policies],
        chat=_chat_models(spec),
    )
    paths = write_results(out_dir, "placement", data_out, markdown(data_out))
    paths.append(plot(data_out, out_dir / "placement.png"))
    print_summary(console, data_out)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return data_out


def _measure(
    bench: _Bench,
    console: Console,
    steps: list[float],
    policies: list[pol.BenchPolicy],
    photos: int,
    learned: list[str],
) -> dict[str, Any]:
    quality = bench.plan_quality()
    wanted = FIXED_PLANS + [p for p in learned if p not in FIXED_PLANS]
    fixed = [p for p in wanted if p in quality]
    results = []
    for i, kbps in enumerate(steps):
        part = [bench.photos[(i * photos + j) % len(bench.photos)] for j in range(photos)]
        with console.status(f"{kbps:g} KB/s: {len(fixed)} fixed plans and {len(policies)} autos"):
            results.append(bench.step(kbps, fixed, policies, part))
        console.log(f"{kbps:g} KB/s done")
    judged = {p.name: [pol.judge_step(p, s, fixed, quality) for s in results] for p in policies}
    changes = []
    for policy in policies:
        for before, after in pol.best_plan_changes(judged[policy.name], steps):
            for a, b in ((before, after), (after, before)):
                at = steps.index(b)
                cell = results[at]["plans"][pol.auto_cell(policy)]
                targets = pol.good_enough(judged[policy.name][at], results[at])
                targets += [pol.settled_plan(cell)]
                with console.status(f"{policy.name}: step change {a:g} → {b:g} KB/s"):
                    changes.append(bench.step_change(a, b, policy, sorted(set(targets))))
    return {
        "fixed_plans": fixed,
        "plan_quality": {p: quality[p] for p in fixed},
        "steps": results,
        "judged": judged,
        "step_changes": changes,
    }


def _measure_quality(
    spec: ClusterSpec, data: Path, photos: list[LabelledPhoto], state_dir: Path, console: Console
) -> dict[str, float]:
    """Each plan's accuracy on the profile half, stored in the ledger the gateway will
    read its profiles from; returns each whole model's accuracy."""
    from tierwise.gateway.profiler import QualityData, profile_quality
    from tierwise.ledger.store import Ledger
    from tierwise.placement.profiles import ANY_NODE, MODEL_ACCURACY, Profiles

    profiles = Profiles()
    files = frozenset(p.file for p in photos)
    with console.status(f"measuring each plan's accuracy on {len(photos)} labelled photos..."):
        profile_quality(spec, QualityData(data, files=files), profiles, console.log)
    ledger = Ledger(resolve(spec, state_dir).ledger_url)
    ledger.save_profiles(profiles.rows())
    ledger.close()
    accuracy = {m: profiles.get(ANY_NODE, m, MODEL_ACCURACY) for m in MODELS}
    return {m: float(a) for m, a in accuracy.items() if a is not None}


def _require_models(spec: ClusterSpec) -> None:
    for model, tier in zip(MODELS, TIERS, strict=True):
        if not any(model in n.models for n in spec.nodes_in(tier)):
            raise InputError(f"this bench needs {model} on a {tier} node; the spec has none")


def _chat_models(spec: ClusterSpec) -> dict[str, Any]:
    """Which chat model each tier runs: a saving is only worth printing where they differ."""
    chat = set(hosted_models(spec, "chat"))
    by_tier = {
        tier: sorted({m for n in spec.nodes_in(tier) for m in n.models if m in chat})
        for tier in TIERS
    }
    distinct = {m for models in by_tier.values() for m in models}
    return {"by_tier": by_tier, "same_everywhere": len(distinct) <= 1}


def reread_results(path: Path, console: Console) -> dict[str, Any]:
    """Re-judge a saved run with this version's analysis (floors, regret, the report) and
    rewrite its tables and plot beside it; nothing is measured again."""
    import json

    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        policies = [pol.BenchPolicy(**p) for p in data["policies"]]
        fixed, quality = data["fixed_plans"], data["plan_quality"]
        data["judged"] = {
            p.name: [pol.judge_step(p, s, fixed, quality) for s in data["steps"]] for p in policies
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--from-json {path}: not a placement result ({exc})") from exc
    paths = write_results(path.parent, "placement", data, markdown(data))
    paths.append(plot(data, path.parent / "placement.png"))
    print_summary(console, data)
    console.print(f"re-read {path}; wrote {', '.join(str(p) for p in paths)}")
    return data


def with_learned_codecs(spec: ClusterSpec, files: list[Path]) -> tuple[ClusterSpec, list[str]]:
    """The spec with ``files`` added to Lite0's codecs, and a fixed plan for each of its
    codecs (those and the ones found in ``codecs_dir``)."""
    from tierwise.codecs.codec_file import read_header
    from tierwise.codecs.found import model_codecs

    headers = [read_header(path) for path in files]
    for path, header in zip(files, headers, strict=True):
        if header.model != L0:
            raise InputError(f"{path}: trained for {header.model}, this bench runs {L0}")
    if files:
        model = spec.models[L0].model_copy(update={"codecs": list(files)})
        spec = spec.model_copy(update={"models": {**spec.models, L0: model}})
    every = [read_header(path) for path in model_codecs(spec, L0)]
    return spec, [f"split@{h.split}/edge/{h.name}" for h in every]
