"""``tierwise bench placement``: where should a photo be classified, link speed by link speed?

On the embedded three-tier cluster (device EMULATED 4x slower than the edge), with real
photos and EfficientNet-Lite0, at each bandwidth step of the device's links it runs every
fixed plan (device only, edge only, cloud only, each split point to the edge with q8
features, each learned codec given with ``--codecs`` or found in the spec's
``codecs_dir`` at its split point, and each variant `tierwise optimize` or `tierwise
assets` left in the spec's ``variants_dir``, run on the device) and
``auto`` (the planner), all through the same gateway, side by side. Then:

- a step change mid-run, both ways, counting requests until ``auto`` switches;
- the planner's own cost per decision over the real plan table;
- an LLM workload of mixed prompts: ``auto`` against all-cloud, in dollars.

Writes ``placement.json``, ``placement.md`` and ``placement.png`` to the results folder.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.config import ClusterSpec
from tierwise.datasets.photos import jpeg_bytes, photo_set
from tierwise.errors import InputError
from tierwise.gateway.live import NODE_BACKOFF_S
from tierwise.net.link_client import LinkClient
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import ClusterState, read_api_key

MODEL = "efficientnet-lite0"
STEPS_KBPS = [2000, 1000, 500, 300, 200, 100, 50]
DEVICE_LINKS = ("device-edge", "device-cloud")
FIXED_PLANS = ["local@device", "edge/jpeg90", "cloud/jpeg90"] + [
    f"split@{k}/edge/q8" for k in range(1, 6)
]
WARMUP = 3
LLM_PROMPTS = [
    "What is 2 + 2?",
    "Name the capital of Japan.",
    "Translate 'good morning' into French.",
    "Give one synonym for 'happy'.",
    "Write a haiku about autumn leaves.",
    "Explain in two sentences why the sky is blue.",
    "List three uses of a paperclip.",
    "Summarise the plot of Romeo and Juliet in three sentences.",
    "Describe, step by step, how to make a cup of tea.",
    "Write a short paragraph arguing for public libraries.",
    "Explain what a hash table is and when to use one, with an example.",
    "Compare trains and planes for a 500 km trip: time, cost and emissions.",
]


@dataclass
class Sample:
    plan: str
    latency_ms: float
    bytes_total: int
    usd: float
    joules: float
    agrees: bool


@dataclass
class Cell:
    """One (bandwidth, plan) measurement."""

    samples: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = [s.latency_ms for s in self.samples]
        return {
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "bytes": statistics.mean(s.bytes_total for s in self.samples),
            "usd_modelled": statistics.mean(s.usd for s in self.samples),
            "joules_modelled": statistics.mean(s.joules for s in self.samples),
            "agreement": statistics.mean(s.agrees for s in self.samples),
            "plans_used": sorted({s.plan for s in self.samples}),
        }


RETRIES = 3


class _Bench:
    def __init__(self, state: ClusterState, token: str, photos: int, console: Console) -> None:
        self.state = state
        self.console = console
        key = read_api_key(state.state_dir)
        self.http = httpx.Client(
            base_url=state.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        self.links = {n: LinkClient(state.links[n].control_url, token) for n in DEVICE_LINKS}
        self.photos = [jpeg_bytes(image) for _, image in photo_set(photos)]
        self.reference = _reference_top1(self.photos)

    def close(self) -> None:
        self.http.close()
        for link in self.links.values():
            link.close()

    def set_bandwidth(self, kbps: float) -> None:
        for link in self.links.values():
            link.set(bandwidth=kbps * 1000)

    def classify(self, photo: int, plan: str | None) -> Sample:
        """One photo through the gateway. A pinned plan refused because a node or link
        looked down (the gateway backs off from a node for NODE_BACKOFF_S after a failed
        call, and from a link after a failed probe) is asked again after that pause, up to
        RETRIES times, rather than ending the run."""
        headers = {"X-Tierwise-Plan": plan} if plan else {}
        for attempt in range(RETRIES + 1):
            started = time.perf_counter()
            response = self.http.post(
                "/v1/vision/classify", content=self.photos[photo], headers=headers
            )
            latency = (time.perf_counter() - started) * 1e3
            transient = response.status_code == 404 and "cannot run now" in response.text
            if not transient or attempt == RETRIES:
                break
            self.console.log(f"{plan}: a node or link looked down; asking again shortly")
            time.sleep(NODE_BACKOFF_S)  # how long the gateway avoids a node that failed
        if response.status_code != 200:
            raise RuntimeError(f"{plan or 'auto'}: {response.status_code} {response.text[:200]}")
        body = response.json()
        m = body["tierwise"]["measured"]
        agrees = body["predictions"][0]["index"] == self.reference[photo]
        return Sample(
            body["tierwise"]["plan"],
            latency,
            m["bytes_up"] + m["bytes_down"],
            m["usd_modelled"],
            m["joules_modelled"],
            agrees,
        )

    def step(self, kbps: float, fixed: list[str]) -> dict[str, Any]:
        """Every plan on every photo, interleaved (photo by photo, in a rotating order) so
        that drifting load on this shared machine falls on all plans alike."""
        self.set_bandwidth(kbps)
        for i in range(WARMUP):  # let the gateway see the new link before auto is timed
            self.classify(i % len(self.photos), None)
        plans: list[str | None] = [*fixed, None]
        cells = {plan: Cell() for plan in plans}
        for i in range(len(self.photos)):
            shift = i % len(plans)
            for plan in plans[shift:] + plans[:shift]:
                cells[plan].samples.append(self.classify(i, plan))
        summary = {plan or "auto": cell.summary() for plan, cell in cells.items()}
        best = min(fixed, key=lambda p: summary[p]["p50_ms"])
        regret = summary["auto"]["p50_ms"] / summary[best]["p50_ms"] - 1
        return {"kbps": kbps, "plans": summary, "best_fixed": best, "auto_regret": regret}

    def step_change(
        self, before: float, after: float, best_after: Callable[[str], bool]
    ) -> dict[str, Any]:
        """Requests until auto's plan is one that suits the new rate."""
        self.set_bandwidth(before)
        chosen = [self.classify(i % len(self.photos), None).plan for i in range(8)]
        self.set_bandwidth(after)
        after_plans = [self.classify(i % len(self.photos), None).plan for i in range(10)]
        switched = next((i + 1 for i, p in enumerate(after_plans) if best_after(p)), None)
        return {
            "from_kbps": before,
            "to_kbps": after,
            "plans_before": chosen,
            "plans_after": after_plans,
            "requests_to_switch": switched,
        }


def _reference_top1(photos: list[bytes]) -> list[int]:
    """The unsplit fp32 model's answer to exactly the bytes each request sends."""
    import io

    from PIL import Image

    from tierwise.models.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite(MODEL, "lite0")
    return [
        int(model.run_all(model.preprocess(Image.open(io.BytesIO(p)))).argmax()) for p in photos
    ]


def _planner_cost(state: ClusterState, rounds: int = 5000) -> dict[str, float]:
    """Time decide() on the real lite0 plan table with the cluster's stored profiles."""
    from tierwise.config import Policy
    from tierwise.ledger.store import Ledger
    from tierwise.placement.cost import LiveState, build_vision_table
    from tierwise.placement.planner import decide
    from tierwise.placement.plans import vision_plans
    from tierwise.placement.profiles import Profiles

    ledger = Ledger(state.ledger_url)
    profiles = Profiles.from_rows(ledger.load_profiles())
    ledger.close()
    time.sleep(2.0)  # let the stopped cluster's processes exit before timing microseconds
    gc.collect()
    plans = vision_plans(state.spec, MODEL, 6, "device")
    started = time.perf_counter()
    table = build_vision_table(state.spec, plans, profiles)
    build_ms = (time.perf_counter() - started) * 1e3
    links, nodes = len(table.links), len(table.nodes)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(rounds):
        live = LiveState(
            rng.uniform(50e3, 2e6, links),
            np.full(links, 0.02),
            np.ones(links, bool),
            np.zeros(nodes),
            np.ones(nodes, bool),
        )
        t0 = time.perf_counter()
        decide(table, live, Policy(max_latency_ms=500), True)
        times.append((time.perf_counter() - t0) * 1e6)
    return {
        "candidates": len(plans),
        "mean_us": statistics.mean(times),
        "p50_us": float(np.percentile(times, 50)),
        "p99_us": float(np.percentile(times, 99)),
        "table_build_ms": build_ms,
    }


def _llm_workload(bench: _Bench) -> dict[str, Any]:
    """The same prompts through auto and pinned to the cloud, priced by the ledger's rules."""
    out: dict[str, Any] = {}
    for mode, plan in (("auto", None), ("all-cloud", "chat@cloud/smollm2")):
        usd, lat, plans = 0.0, [], []
        for prompt in LLM_PROMPTS:
            headers = {"X-Tierwise-Plan": plan} if plan else {}
            body = {
                "model": "auto",
                "max_tokens": 64,
                "temperature": 0.0,
                "messages": [{"role": "user", "content": prompt}],
            }
            started = time.perf_counter()
            response = bench.http.post("/v1/chat/completions", json=body, headers=headers)
            lat.append((time.perf_counter() - started) * 1e3)
            ext = response.json()["tierwise"]
            usd += ext["measured"]["usd_modelled"]
            plans.append(ext["plan"])
        out[mode] = {
            "usd_modelled": usd,
            "p50_ms": statistics.median(lat),
            "plans": sorted(set(plans)),
            "sequence": plans,
        }
    cloud = out["all-cloud"]["usd_modelled"]
    out["saving"] = 1 - out["auto"]["usd_modelled"] / cloud if cloud > 0 else 0.0
    return out


def run_placement_bench(
    spec: ClusterSpec,
    console: Console,
    out_dir: Path,
    photos: int = 20,
    steps: list[float] | None = None,
    codecs: list[Path] | None = None,
) -> dict[str, Any]:
    steps = steps or [float(s) for s in STEPS_KBPS]
    spec, learned = with_learned_codecs(spec, codecs or [])
    fixed = FIXED_PLANS + learned + variant_fixed_plans(spec)
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        cluster = LocalCluster(spec.with_free_ports(), Path(tmp))
        with console.status("starting the cluster and its gateway (first start profiles)..."):
            state = cluster.start()
        bench = _Bench(state, cluster.token, photos, console)
        try:
            results = []
            for kbps in steps:
                with console.status(f"{kbps:g} KB/s: {len(fixed)} fixed plans and auto..."):
                    results.append(bench.step(kbps, fixed))
                r = results[-1]
                console.log(
                    f"{kbps:g} KB/s: best fixed {r['best_fixed']} "
                    f"{r['plans'][r['best_fixed']]['p50_ms']:.0f} ms, auto "
                    f"{r['plans']['auto']['p50_ms']:.0f} ms (regret {r['auto_regret']:+.1%})"
                )
            best = {r["kbps"]: r["best_fixed"] for r in results}
            changes = _step_changes(bench, best, steps)
            with console.status("LLM workload: auto against all-cloud..."):
                llm = _llm_workload(bench)
        finally:
            bench.close()
            cluster.stop()
        planner = _planner_cost(state)
    data = {
        "suite": "placement",
        "environment": environment(),
        "model": MODEL,
        "photos": photos,
        "fixed_plans": fixed,
        "steps": results,
        "step_changes": changes,
        "planner": planner,
        "llm": llm,
    }
    paths = write_results(out_dir, "placement", data, _markdown(data))
    paths.append(_plot(data, out_dir / "placement.png"))
    _print(console, data)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return data


def variant_fixed_plans(spec: ClusterSpec) -> list[str]:
    """A device-only plan for each variant of the model that nodes will serve."""
    from tierwise.models.variant_file import find_variants

    if spec.variants_dir is None:
        return []
    return [f"{card.name}:local@device" for _, card in find_variants(spec.variants_dir, MODEL)]


def with_learned_codecs(spec: ClusterSpec, files: list[Path]) -> tuple[ClusterSpec, list[str]]:
    """The spec with ``files`` added to the model's codecs, and a fixed plan for each of
    its codecs (those and the ones found in ``codecs_dir``)."""
    from tierwise.codecs.codec_file import read_header
    from tierwise.codecs.found import model_codecs

    headers = [read_header(path) for path in files]
    for path, header in zip(files, headers, strict=True):
        if header.model != MODEL:
            raise InputError(f"{path}: trained for {header.model}, this bench runs {MODEL}")
    if files:
        model = spec.models[MODEL].model_copy(update={"codecs": list(files)})
        spec = spec.model_copy(update={"models": {**spec.models, MODEL: model}})
    every = [read_header(path) for path in model_codecs(spec, MODEL)]
    return spec, [f"split@{h.split}/edge/{h.name}" for h in every]


def _step_changes(
    bench: _Bench, best: dict[float, str], steps: list[float]
) -> list[dict[str, Any]]:
    """Jump between the fastest rate and the fastest rate at which the best plan is of the
    other kind (local against remote), so the right answer changes; and back."""

    def remote(plan: str) -> bool:
        return not plan.startswith("local@")

    def suits(rate: float) -> Callable[[str], bool]:
        return remote if remote(best[rate]) else (lambda p: not remote(p))

    fast = max(steps)
    differing = [s for s in steps if remote(best[s]) != remote(best[fast])]
    slow = max(differing) if differing else min(steps)
    return [
        bench.step_change(fast, slow, suits(slow)),
        bench.step_change(slow, fast, suits(fast)),
    ]


# ---------------------------------------------------------------- output


def _rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for step in data["steps"]:
        for plan in [*data["fixed_plans"], "auto"]:
            c = step["plans"][plan]
            mark = " (best)" if plan == step["best_fixed"] else ""
            used = ", ".join(c["plans_used"]) if plan == "auto" else ""
            rows.append(
                [
                    f"{step['kbps']:g}",
                    plan + mark,
                    f"{c['p50_ms']:.0f}",
                    f"{c['p95_ms']:.0f}",
                    f"{c['bytes'] / 1e3:.1f}",
                    f"{c['usd_modelled']:.2e}",
                    f"{c['joules_modelled']:.2f}",
                    f"{c['agreement']:.0%}",
                    used,
                ]
            )
    return rows


_HEADERS = [
    "KB/s",
    "plan",
    "p50 ms",
    "p95 ms",
    "KB/req",
    "$/req modelled",
    "J/req modelled",
    "top-1 agree",
    "auto chose",
]


def _regret_rows(data: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            f"{s['kbps']:g}",
            s["best_fixed"],
            f"{s['plans'][s['best_fixed']]['p50_ms']:.0f}",
            f"{s['plans']['auto']['p50_ms']:.0f}",
            f"{s['auto_regret']:+.1%}",
        ]
        for s in data["steps"]
    ]


def _markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    setup = (
        f"{env['when']}, {env['cpus']} CPUs. Produced by `tierwise bench placement`. "
        f"EfficientNet-Lite0 on {data['photos']} real photos per cell; the device is EMULATED "
        "(speed factor 0.25: about 6x the edge's compute time here, since its compute runs "
        "cold after each emulated pause); both device links are EMULATED at each rate "
        "(RTT 20 ms to the edge, 80 ms to the cloud). Latency is measured by the client, "
        "through the gateway; "
        "top-1 agreement is against the unsplit fp32 model on the same JPEG bytes. "
        "Dollars are modelled (price tables × measured seconds and bytes), and so are "
        "joules (stated watts × measured seconds, plus radio J/byte)."
    )
    regret = markdown_table(
        ["KB/s", "best fixed plan", "its p50 ms", "auto p50 ms", "regret"], _regret_rows(data)
    )
    return "\n\n".join(
        [
            "# tierwise bench placement",
            setup,
            "## Auto against the best fixed plan",
            regret,
            "## Every plan at every rate",
            markdown_table(_HEADERS, _rows(data)),
            "## Step changes",
            _changes_text(data),
            "## Planner cost",
            _planner_text(data["planner"]),
            "## LLM workload",
            _llm_text(data["llm"]),
        ]
    )


def _changes_text(data: dict[str, Any]) -> str:
    return "\n".join(
        f"- {c['from_kbps']:g} → {c['to_kbps']:g} KB/s: auto switched after "
        f"{c['requests_to_switch']} request(s); plans after the change: "
        + ", ".join(c["plans_after"])
        for c in data["step_changes"]
    )


def _planner_text(p: dict[str, Any]) -> str:
    return (
        f"{p['candidates']} candidate plans: mean {p['mean_us']:.1f} µs, "
        f"p50 {p['p50_us']:.1f} µs, p99 {p['p99_us']:.1f} µs per decision. The table is "
        f"rebuilt in {p['table_build_ms']:.1f} ms when profiles change, at most once a second."
    )


def _llm_text(llm: dict[str, Any]) -> str:
    auto, cloud = llm["auto"], llm["all-cloud"]
    return (
        f"{len(LLM_PROMPTS)} mixed prompts: auto spent ${auto['usd_modelled']:.6f} "
        f"(plans in request order: {_runs(auto['sequence'])}; "
        f"p50 {auto['p50_ms']:.0f} ms); "
        f"all-cloud ${cloud['usd_modelled']:.6f} (p50 {cloud['p50_ms']:.0f} ms): "
        f"{llm['saving']:.0%} saved (dollars modelled)."
    )


def _runs(items: list[str]) -> str:
    """``a, a, b`` → ``a ×2, b ×1``: where exploration tried another node shows up."""
    return ", ".join(f"{item} ×{len(list(run))}" for item, run in itertools.groupby(items))


def _plot(data: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    rates = [s["kbps"] for s in data["steps"]]
    for plan in [*data["fixed_plans"], "auto"]:
        p50 = [s["plans"][plan]["p50_ms"] for s in data["steps"]]
        style = (
            {"linewidth": 3, "color": "black"} if plan == "auto" else {"linewidth": 1, "alpha": 0.8}
        )
        ax.plot(rates, p50, marker="o", label=plan, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("device link bandwidth, KB/s (EMULATED)")
    ax.set_ylabel("p50 latency, ms")
    ax.set_title("EfficientNet-Lite0 placement: fixed plans and auto")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _print(console: Console, data: dict[str, Any]) -> None:
    table = Table(title="auto against the best fixed plan")
    for col in ("KB/s", "best fixed plan", "its p50 ms", "auto p50 ms", "regret"):
        table.add_column(col, justify="right")
    for row in _regret_rows(data):
        table.add_row(*map(str, row))
    console.print(table)
    p = data["planner"]
    console.print(
        f"planner: {p['candidates']} plans, {p['mean_us']:.1f} µs mean, {p['p99_us']:.1f} µs p99"
    )
    for c in data["step_changes"]:
        console.print(
            f"step {c['from_kbps']:g} → {c['to_kbps']:g} KB/s: switched after "
            f"{c['requests_to_switch']} request(s)"
        )
    llm = data["llm"]
    console.print(
        f"LLM: auto ${llm['auto']['usd_modelled']:.6f} vs all-cloud "
        f"${llm['all-cloud']['usd_modelled']:.6f} ({llm['saving']:.0%} saved, modelled)"
    )
