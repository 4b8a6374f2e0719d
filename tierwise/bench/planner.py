"""`tierwise bench planner`: what one planning decision costs over the full plan set.

Pure CPU and no cluster: the plans of a ``model=auto`` classify request on the default
spec: EfficientNet-Lite0's (local, input codecs, `original`, every split × feature codec,
and every three-tier pair of splits × codec pair) and the larger Lites' offloads, costed
from fixed, plausible profiles with measured accuracies, so the
quality floor and the objective's quality term run as they do live. Each round draws new
link bandwidths and times one :func:`~tierwise.placement.planner.decide`. The machine's
load average is recorded beside the numbers: on a shared machine, p99 is the other jobs'.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tierwise.bench.report import environment, write_results
from tierwise.config import ClusterSpec, Policy
from tierwise.placement.cost import LiveState, PlanTable, build_vision_table
from tierwise.placement.planner import decide
from tierwise.placement.plans import ORIGINAL, led_by, three_tier_plans, vision_plans
from tierwise.placement.profiles import ANY_NODE, Profiles, codec_metric, stage_metric

MODEL, STAGES = "efficientnet-lite0", 7
#: Lite0's stage times on the edge (ms) and its feature sizes at each split (bytes),
#: rounded from `tierwise profile` on this project's machines
STAGE_MS = [4.0, 6.0, 5.0, 6.0, 8.0, 3.0, 0.5]
FEATURE_BYTES = [150_000, 200_000, 75_000, 88_000, 63_000, 4_000]
CODEC_RATIO = {"raw": 1, "fp16": 2, "q8": 4, "q4": 8}
TARGET_P99_US = 100.0


#: The larger Lites a ``model=auto`` request may also use, each's compute relative to Lite0
#: (measured on this project's machines: 28, 46 and 63 ms a photo) and its accuracy.
LARGER = {"efficientnet-lite1": (1.6, 0.868), "efficientnet-lite2": (2.2, 0.856)}


def plan_table(spec: ClusterSpec) -> PlanTable:
    """The plans of a ``model=auto`` classify request: every Lite0 plan (three-tier
    included) and the larger Lites' wherever the spec hosts them, ids led by the model."""
    plans = vision_plans(spec, MODEL, STAGES, "device") + three_tier_plans(
        spec, MODEL, STAGES, "device"
    )
    plans = led_by(MODEL, plans)
    for model in LARGER:
        plans += led_by(model, vision_plans(spec, model, STAGES, "device"))
    return build_vision_table(spec, plans, _profiles())


def _profiles() -> Profiles:
    p = _lite0_profiles()
    _add_larger(p)
    return p


def _add_larger(p: Profiles) -> None:
    for model, (factor, accuracy) in LARGER.items():
        for node in ("edge", "cloud"):
            for i, ms in enumerate(STAGE_MS):
                p.set(node, model, stage_metric(i), ms * factor)
        p.set(ANY_NODE, model, "out:bytes", 4100.0)
        p.set(ANY_NODE, model, "model:accuracy", accuracy)
        p.set(ANY_NODE, model, codec_metric(ORIGINAL, 0, "bytes"), 60_000.0)
        for codec, size in (("jpeg90", 24_000.0), ("png", 120_000.0)):
            for what, value in (("bytes", size), ("ms", 1.0), ("agreement", 0.97)):
                p.set(ANY_NODE, model, codec_metric(codec, 0, what), value)
            p.set(ANY_NODE, model, codec_metric(codec, 0, "accuracy"), accuracy - 0.01)


def _lite0_profiles() -> Profiles:
    p = Profiles()
    for node, factor in (("device", 4.0), ("edge", 1.0), ("cloud", 0.5)):
        for i, ms in enumerate(STAGE_MS):
            p.set(node, MODEL, stage_metric(i), ms * factor)
    p.set(ANY_NODE, MODEL, "out:bytes", 4100.0)
    p.set(ANY_NODE, MODEL, "model:accuracy", 0.88)
    p.set(ANY_NODE, MODEL, codec_metric(ORIGINAL, 0, "bytes"), 60_000.0)
    for codec, size, accuracy in (("jpeg90", 20_000.0, 0.85), ("png", 100_000.0, 0.88)):
        for what, value in (("bytes", size), ("ms", 1.0), ("agreement", 0.97)):
            p.set(ANY_NODE, MODEL, codec_metric(codec, 0, what), value)
        p.set(ANY_NODE, MODEL, codec_metric(codec, 0, "accuracy"), accuracy)
    for split, size in enumerate(FEATURE_BYTES, start=1):
        for codec, ratio in CODEC_RATIO.items():
            accuracy = 0.88 if ratio <= 4 else 0.86
            for what, value in (("bytes", size / ratio), ("ms", 0.5), ("agreement", 0.99)):
                p.set(ANY_NODE, MODEL, codec_metric(codec, split, what), value)
            p.set(ANY_NODE, MODEL, codec_metric(codec, split, "accuracy"), accuracy)
    return p


def time_decisions(table: PlanTable, rounds: int, policy: Policy) -> dict[str, float]:
    links, nodes = len(table.links), len(table.nodes)
    rng = np.random.default_rng(0)
    lives = [
        LiveState(
            rng.uniform(50e3, 2e6, links),
            np.full(links, 0.02),
            np.ones(links, bool),
            np.zeros(nodes),
            np.ones(nodes, bool),
        )
        for _ in range(rounds)
    ]
    times = []
    gc.collect()
    gc.disable()  # a collection inside a timed call measures the collector, not the planner
    try:
        for live in lives:
            t0 = time.perf_counter()
            decide(table, live, policy, True)
            times.append((time.perf_counter() - t0) * 1e6)
    finally:
        gc.enable()
    return {
        "mean_us": statistics.mean(times),
        "p50_us": float(np.percentile(times, 50)),
        "p99_us": float(np.percentile(times, 99)),
    }


def run_planner_bench(spec: ClusterSpec, console: Console, out: Path, rounds: int) -> None:
    started = time.perf_counter()
    table = plan_table(spec)
    build_ms = (time.perf_counter() - started) * 1e3
    policies = {
        "default (quality floor)": Policy(),
        "max_latency_ms=100 (soft constraints ranked)": Policy(max_latency_ms=100),
    }
    data: dict[str, Any] = {
        "environment": environment(),
        "load_average_1m": os.getloadavg()[0],
        "plans": len(table.plans),
        "three_tier_plans": int(np.count_nonzero(table.link2 >= 0)),
        "table_build_ms": build_ms,
        "rounds": rounds,
        "policies": {name: time_decisions(table, rounds, p) for name, p in policies.items()},
    }
    for name, t in data["policies"].items():
        console.print(
            f"{name}: {data['plans']} plans, mean {t['mean_us']:.1f} µs, "
            f"p50 {t['p50_us']:.1f} µs, p99 {t['p99_us']:.1f} µs (target ≤ {TARGET_P99_US:g})"
        )
    for path in write_results(out, "planner", data, _markdown(data)):
        console.print(f"wrote {path}")


def _markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    lines = [
        "# tierwise bench planner",
        "",
        f"{env['when']}, {env['cpus']} CPUs, 1-minute load average "
        f"{data['load_average_1m']:.1f} while measuring (pure CPU: on a shared machine the "
        "tail is partly the other jobs'). Produced by `tierwise bench planner`: "
        f"{data['plans']} plans of a `model=auto` classify request on the default spec "
        "(every EfficientNet-Lite0 plan, and Lite1's and Lite2's offloads) "
        f"({data['three_tier_plans']} of them three-tier), {data['rounds']} decisions each, "
        f"new link bandwidths every decision. Target: p99 ≤ {TARGET_P99_US:g} µs.",
        "",
        "| policy | mean µs | p50 µs | p99 µs |",
        "|---|---|---|---|",
    ]
    for name, t in data["policies"].items():
        lines.append(f"| {name} | {t['mean_us']:.1f} | {t['p50_us']:.1f} | {t['p99_us']:.1f} |")
    build = data["table_build_ms"]
    lines += ["", f"Building the table (when profiles change) took {build:.1f} ms."]
    return "\n".join(lines)
