"""``tierwise demo``: start the three-tier cluster, ask every tier, show what it cost.

The demo plays a client on the device tier. It sends one chat prompt and one real photo
(``skimage.data.chelsea``) to each tier's node, plus one split request (the device runs
the first stages of EfficientNet-Lite0 and the edge the rest), and prints tier, answer,
latency and the bytes the link proxies counted on the wire.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from tierwise.config import ClusterSpec, Tier
from tierwise.net.link_client import LinkClient
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.node_client import NodeClient
from tierwise.runtime.state import ClusterState
from tierwise.units import format_bytes, format_rate

T = TypeVar("T")
CLIENT_TIER: Tier = "device"
PROMPT = "In one sentence, why run AI on a phone instead of in the cloud?"
CHAT_MODEL = "smollm2"
VISION_MODEL = "efficientnet-lite0"


@dataclass
class Row:
    tier: str
    request: str
    answer: str
    latency_s: float
    bytes_up: int
    bytes_down: int
    detail: str = ""


def demo_photo() -> tuple[str, bytes]:
    """A real photo shipped with scikit-image, as JPEG bytes."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    return "chelsea.jpg (skimage)", buf.getvalue()


class _LinkMeter:
    """Wire bytes on every link, read from the link proxies before and after a request."""

    def __init__(self, state: ClusterState, token: str) -> None:
        self.clients = [LinkClient(ep.control_url, token) for ep in state.links.values()]

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def totals(self) -> tuple[int, int]:
        up = down = 0
        for client in self.clients:
            status = client.show()
            up, down = up + status["bytes_up"], down + status["bytes_down"]
        return up, down

    async def measure(self, call: Awaitable[T]) -> tuple[T, float, int, int]:
        """Await ``call`` (not started before this) and return it with time and link bytes."""
        up0, down0 = self.totals()
        started = time.perf_counter()
        result = await call
        elapsed = time.perf_counter() - started
        up1, down1 = self.totals()
        return result, elapsed, up1 - up0, down1 - down0


async def _ask_every_tier(state: ClusterState, token: str, photo: bytes) -> list[Row]:
    meter = _LinkMeter(state, token)
    try:
        return await _ask(state, token, photo, meter)
    finally:
        meter.close()


async def _ask(state: ClusterState, token: str, photo: bytes, meter: _LinkMeter) -> list[Row]:
    rows: list[Row] = []
    for node in state.spec.nodes:
        async with NodeClient(state.url_from(CLIENT_TIER, node.name), token) as client:
            messages = [{"role": "user", "content": PROMPT}]
            reply, secs, up, down = await meter.measure(
                client.chat(CHAT_MODEL, messages, max_tokens=48, temperature=0.2, seed=7)
            )
            tps = reply.usage.completion_tokens / secs
            detail = (
                f"{reply.usage.prompt_tokens}+{reply.usage.completion_tokens} tok, {tps:.0f} tok/s"
            )
            rows.append(Row(node.tier, "chat", reply.text.strip(), secs, up, down, detail))
            result, secs, up, down = await meter.measure(
                client.classify(VISION_MODEL, photo, top_k=1)
            )
            top = result.predictions[0]
            answer = f"{top['label']} ({top['probability']:.0%})"
            rows.append(Row(node.tier, "photo", answer, secs, up, down, "JPEG sent"))
    rows.append(await _split_row(state, token, photo, meter))
    return rows


async def _split_row(state: ClusterState, token: str, photo: bytes, meter: _LinkMeter) -> Row:
    """Device runs stages [0, k), the edge runs [k, n): raw float32 features cross the link."""
    from tierwise.models.efficientnet_lite import EfficientNetLite

    device = next(n for n in state.spec.nodes if n.tier == "device")
    edge = next(n for n in state.spec.nodes if n.tier == "edge")
    local = EfficientNetLite(VISION_MODEL, "lite0")  # the client's own copy, for preprocessing
    split = 4
    async with (
        NodeClient(state.url_from(CLIENT_TIER, device.name), token) as dev,
        NodeClient(state.url_from(CLIENT_TIER, edge.name), token) as edg,
    ):
        x = local.preprocess(Image.open(io.BytesIO(photo)))

        async def run() -> np.ndarray:
            head = await dev.run_stages(VISION_MODEL, x, 0, split)
            tail = await edg.run_stages(VISION_MODEL, head.array, split, len(local.stages))
            return tail.array

        logits, secs, up, down = await meter.measure(run())
    top = local.top_k(logits, 1)[0]
    shape = "×".join(map(str, local.stages[split - 1].output_shape))
    return Row(
        "device→edge",
        f"split@{split}",
        f"{top.label} ({top.probability:.0%})",
        secs,
        up,
        down,
        f"fp32 {shape} features sent",
    )


def _table(rows: list[Row]) -> Table:
    """Fits 80 columns: the answer column gives way, the numbers never do."""
    table = Table(
        title=f"a client on the device tier asks every tier ({CHAT_MODEL}, {VISION_MODEL})",
        caption="bytes: measured on the wire by the link proxies (HTTP included)",
        expand=True,
    )
    table.add_column("tier", no_wrap=True, min_width=11)
    table.add_column("request", no_wrap=True, min_width=7)
    table.add_column("answer", overflow="ellipsis", no_wrap=True, ratio=1, min_width=12)
    table.add_column("latency", justify="right", no_wrap=True, min_width=7)
    table.add_column("bytes ↑", justify="right", no_wrap=True, min_width=7)
    table.add_column("bytes ↓", justify="right", no_wrap=True, min_width=7)
    for r in rows:
        table.add_row(
            r.tier,
            r.request,
            r.answer,
            f"{r.latency_s * 1e3:.0f} ms",
            format_bytes(r.bytes_up),
            format_bytes(r.bytes_down),
        )
    return table


def _details(rows: list[Row]) -> list[str]:
    return [f"{r.tier} {r.request}: {r.detail}" for r in rows if r.detail and r.request != "photo"]


def _emulation_notes(spec: ClusterSpec) -> list[str]:
    notes = []
    for node in spec.nodes:
        if node.speed_factor < 1:
            notes.append(
                f"EMULATED: node {node.name} runs at speed factor {node.speed_factor} "
                f"({node.emulate.reason or 'slowed'})"
            )
    for link in spec.links:
        if link.emulate is not None:
            e = link.emulate
            notes.append(
                f"EMULATED link {link.name}: {format_rate(e.bandwidth)} up, "
                f"{format_rate(e.down_bandwidth)} down, RTT {e.rtt * 1e3:.0f} ms, loss {e.loss:.1%}"
            )
    return notes


def run_demo(spec: ClusterSpec, console: Console, state_dir: Path | None = None) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tierwise-demo-") as tmp:
        cluster = LocalCluster(spec.with_free_ports(), state_dir or Path(tmp))
        started = time.perf_counter()
        with console.status("starting the local cluster (3 nodes, 3 link proxies)..."):
            state = cluster.start(progress=lambda msg: console.log(msg))
        console.log(f"cluster healthy after {time.perf_counter() - started:.1f} s")
        try:
            name, photo = demo_photo()
            with console.status(f"asking every tier (chat prompt and photo {name})..."):
                rows = asyncio.run(_ask_every_tier(state, cluster.token, photo))
            for exit_ in cluster.poll():
                console.print(
                    f"[red]{exit_.kind} {exit_.name} died with code {exit_.returncode}[/red]"
                )
        finally:
            cluster.stop()
    console.print(_table(rows))
    for line in _details(rows):
        console.print(line)
    answers = {r.answer for r in rows if r.request == "chat"}
    console.print(f"chat answer{'s' if len(answers) > 1 else ''} in full: " + " | ".join(answers))
    for note in _emulation_notes(spec):
        console.print(f"[yellow]{note}[/yellow]")
    return rows
