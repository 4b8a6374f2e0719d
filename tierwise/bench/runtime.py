"""``tierwise bench runtime``: what the three-tier runtime itself costs on this machine.

Measured side by side in one run:
- node start-up time (spawn → first healthy /healthz), per node;
- SmolLM2 speed on each node: time to first token, decode tokens/s, end-to-end tokens/s;
- EfficientNet-Lite0 ms/image: in this process (no HTTP), and on each node (node-reported
  compute time, EMULATED slow-down included on the device);
- the link proxy's rate accuracy at 50 KB/s to 10 MB/s, up and down.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.config import ClusterSpec
from tierwise.net.throughput import measure_link_rate
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.node_client import NodeClient
from tierwise.runtime.state import ClusterState

LINK_RATES = [50e3, 200e3, 1e6, 10e6]
LLM_PROMPT = "Write a detailed essay about the history of bridges, with examples."
LLM_RUNS = 3
VISION_RUNS = 20


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def _llm_on_node(client: NodeClient, max_tokens: int) -> dict[str, float]:
    runs = []
    for seed in range(LLM_RUNS):
        started = time.perf_counter()
        first = last = None
        usage = None
        async for chunk in client.chat_stream(
            "smollm2", [{"role": "user", "content": LLM_PROMPT}], max_tokens=max_tokens, seed=seed
        ):
            now = time.perf_counter()
            if chunk.text:
                first = first or now
                last = now
            usage = chunk.usage or usage
        assert usage is not None and first is not None and last is not None
        total = time.perf_counter() - started
        n = usage.completion_tokens
        runs.append(
            {
                "ttft_ms": (first - started) * 1e3,
                "decode_tok_s": (n - 1) / (last - first) if last > first else float("nan"),
                "e2e_tok_s": n / total,
                "tokens": n,
                "prompt_tokens": usage.prompt_tokens,
            }
        )
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


async def _vision_on_node(client: NodeClient, x: np.ndarray, stages: int) -> dict[str, float]:
    await client.run_stages("efficientnet-lite0", x, 0, stages)  # warm-up
    times = []
    for _ in range(VISION_RUNS):
        reply = await client.run_stages("efficientnet-lite0", x, 0, stages)
        times.append(reply.compute_ms)
    return {"p50_ms": _percentile(times, 50), "p95_ms": _percentile(times, 95)}


def _vision_in_process(x: np.ndarray) -> tuple[dict[str, float], int]:
    from tierwise.models.efficientnet_lite import EfficientNetLite

    model = EfficientNetLite("efficientnet-lite0", "lite0")
    model.run_all(x)
    times = []
    for _ in range(VISION_RUNS):
        started = time.perf_counter()
        model.run_all(x)
        times.append((time.perf_counter() - started) * 1e3)
    return {"p50_ms": _percentile(times, 50), "p95_ms": _percentile(times, 95)}, len(model.stages)


def _photo_input() -> np.ndarray:
    from skimage import data

    from tierwise.models.efficientnet_lite import EfficientNetLite

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    model = EfficientNetLite("efficientnet-lite0", "lite0")
    return model.preprocess(Image.open(buf))


async def _per_node(state: ClusterState, token: str, max_tokens: int) -> dict[str, Any]:
    x = _photo_input()
    out: dict[str, Any] = {}
    for node in state.spec.nodes:
        async with NodeClient(state.node_url(node.name), token) as client:
            out[node.name] = {
                "tier": node.tier,
                "speed_factor": node.speed_factor,
                "llm": await _llm_on_node(client, max_tokens),
                "vision": await _vision_on_node(client, x, 6),
            }
    return out


def _solo_startup(spec: ClusterSpec) -> dict[str, float | None]:
    """Each node started alone (no links, no neighbours competing for the CPU)."""
    out: dict[str, float | None] = {}
    for node in spec.nodes:
        data = spec.with_free_ports().model_dump(mode="python")
        data["nodes"] = [n for n in data["nodes"] if n["name"] == node.name]
        data["links"] = []
        data["gateway"] = None
        alone = ClusterSpec.model_validate(data)
        with (
            tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp,
            LocalCluster(alone, Path(tmp)) as cluster,
        ):
            out[node.name] = cluster.child(node.name).startup_seconds
    return out


async def _links() -> list[dict[str, Any]]:
    rows = []
    directions: tuple[Literal["up", "down"], ...] = ("up", "down")
    for rate in LINK_RATES:
        for direction in directions:
            result = await measure_link_rate(rate, rate, direction)
            rows.append(
                {
                    "set_Bps": rate,
                    "direction": direction,
                    "measured_Bps": result.rate,
                    "error": result.rate / rate - 1,
                }
            )
    return rows


def run_runtime_bench(
    spec: ClusterSpec, console: Console, out_dir: Path, max_tokens: int = 128
) -> dict[str, Any]:
    # The runtime alone: nodes and links, without the gateway (bench placement has it).
    runtime_only = spec.with_free_ports().model_copy(update={"gateway": None})
    with tempfile.TemporaryDirectory(prefix="tierwise-bench-") as tmp:
        cluster = LocalCluster(runtime_only, Path(tmp))
        with console.status("starting the cluster..."):
            state = cluster.start()
        startup = {c.name: c.startup_seconds for c in cluster.children}
        try:
            with console.status("measuring SmolLM2 and EfficientNet-Lite0 on every node..."):
                nodes = asyncio.run(_per_node(state, cluster.token, max_tokens))
        finally:
            cluster.stop()
    with console.status("starting each node alone..."):
        solo = _solo_startup(spec)
    with console.status("measuring EfficientNet-Lite0 in this process..."):
        local, _ = _vision_in_process(_photo_input())
    with console.status("measuring link-proxy rate accuracy..."):
        links = asyncio.run(_links())
    data = {
        "suite": "runtime",
        "environment": environment(),
        "startup_seconds": startup,
        "startup_seconds_alone": solo,
        "nodes": nodes,
        "vision_in_process": local,
        "links": links,
    }
    markdown = _markdown(data)
    paths = write_results(out_dir, "runtime", data, markdown)
    _print(console, data)
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
    return data


def _node_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, n in data["nodes"].items():
        emulated = f"×{n['speed_factor']} EMULATED" if n["speed_factor"] < 1 else "1"
        rows.append(
            [
                name,
                emulated,
                f"{data['startup_seconds'][name]:.1f} / {data['startup_seconds_alone'][name]:.1f}",
                f"{n['llm']['ttft_ms']:.0f}",
                f"{n['llm']['decode_tok_s']:.1f}",
                f"{n['llm']['e2e_tok_s']:.1f}",
                f"{n['vision']['p50_ms']:.1f}",
                f"{n['vision']['p95_ms']:.1f}",
            ]
        )
    local = data["vision_in_process"]
    rows.append(
        ["(in process)", "1", "", "", "", "", f"{local['p50_ms']:.1f}", f"{local['p95_ms']:.1f}"]
    )
    return rows


_NODE_HEADERS = [
    "node",
    "speed",
    "start-up s (all / alone)",
    "SmolLM2 TTFT ms",
    "decode tok/s",
    "e2e tok/s",
    "Lite0 p50 ms",
    "Lite0 p95 ms",
]
_LINK_HEADERS = ["set rate", "direction", "measured", "error"]


def _link_rows(data: dict[str, Any]) -> list[list[Any]]:
    from tierwise.units import format_rate

    return [
        [
            format_rate(r["set_Bps"]),
            r["direction"],
            format_rate(r["measured_Bps"]),
            f"{r['error']:+.1%}",
        ]
        for r in data["links"]
    ]


def _markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    return "\n\n".join(
        [
            "# tierwise bench runtime",
            f"{env['when']}, {env['cpus']} CPUs, Python {env['python']}. "
            "Produced by `tierwise bench runtime`.",
            "## Nodes",
            markdown_table(_NODE_HEADERS, _node_rows(data)),
            "Start-up: spawn to first healthy `/healthz`, with all six processes starting at "
            "once on this machine, and with the node started alone. Lite0 times are "
            "node-reported compute per image (batch 1, 224×224); the device's include its "
            "EMULATED slow-down. SmolLM2: 128-token answers, median of 3.",
            "## Link proxy accuracy (EMULATED links)",
            markdown_table(_LINK_HEADERS, _link_rows(data)),
        ]
    )


def _print(console: Console, data: dict[str, Any]) -> None:
    for title, headers, rows in (
        ("nodes", _NODE_HEADERS, _node_rows(data)),
        ("link proxy accuracy", _LINK_HEADERS, _link_rows(data)),
    ):
        table = Table(title=title)
        for header in headers:
            table.add_column(header, justify="right")
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
