"""``tierwise demo``: start the three-tier cluster, ask every tier, let the gateway choose.

The demo plays a client on the device tier. First it sends one chat prompt and one real
photo (``skimage.data.chelsea``) to each tier's node directly, plus one split request
(the device runs the first stages of EfficientNet-Lite0 and the edge the rest), and
prints tier, answer, latency and the bytes the link proxies counted on the wire. Then it
sends photos and prompts through the gateway while the device's links slow from 2000 to
50 KB/s, and shows which plan the planner chose each time and what it cost, against what
the same requests would have cost all in the cloud. Last, one request in plain language
("What is in example.jpg? ...") is planned into steps and run across the tiers.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from tierwise.config import ClusterSpec, Tier
from tierwise.errors import ClusterError
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


@dataclass
class PlacedRow:
    rate_kbps: float
    request: str
    plan: str
    latency_ms: float
    usd: float
    note: str = ""


GATEWAY_RATES = (2000.0, 300.0, 50.0)


def _gateway_rows(state: ClusterState, token: str) -> tuple[list[PlacedRow], dict[str, float]]:
    """The same requests through the gateway's planner as the device links slow down."""
    import httpx

    from tierwise.datasets.photos import jpeg_bytes, photo_set
    from tierwise.runtime.state import read_api_key

    key = read_api_key(state.state_dir)
    photos = [jpeg_bytes(image) for _, image in photo_set(3)]
    links = [LinkClient(state.links[n].control_url, token) for n in ("device-edge", "device-cloud")]
    rows: list[PlacedRow] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=state.gateway_url, headers=headers, timeout=120) as http:
        for rate in GATEWAY_RATES:
            for link in links:
                link.set(bandwidth=rate * 1000)
            for i, photo in enumerate(photos):
                ext = http.post("/v1/vision/classify", content=photo).json()["tierwise"]
                rows.append(_placed(rate, f"photo {i + 1}", ext))
        chat = {
            "model": "auto",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        rows.append(
            _placed(
                GATEWAY_RATES[-1],
                "chat",
                http.post("/v1/chat/completions", json=chat).json()["tierwise"],
            )
        )
        private = {**chat, "tierwise": {"policy": {"privacy": "raw-stays-local"}}}
        ext = http.post("/v1/chat/completions", json=private).json()["tierwise"]
        rows.append(_placed(GATEWAY_RATES[-1], "chat, private", ext, "privacy: raw-stays-local"))
    for link in links:
        link.close()
    from tierwise.ledger.report import build_report
    from tierwise.ledger.store import Ledger

    ledger = Ledger(state.ledger_url)
    total = build_report(ledger.rows()).total
    ledger.close()
    return rows, {"usd": total.usd, "cloud_usd": total.cloud_usd, "requests": total.requests}


RUN_REQUEST = "What is in example.jpg? Tell me in one sentence."


def _plain_language_run(state: ClusterState, photo: bytes) -> dict[str, Any]:
    """One request in plain language: planned into steps, each placed on a tier."""
    import base64

    import httpx

    from tierwise.runtime.state import read_api_key

    headers = {"Authorization": f"Bearer {read_api_key(state.state_dir)}"}
    body = {"input": RUN_REQUEST, "files": {"example.jpg": base64.b64encode(photo).decode()}}
    response = httpx.post(f"{state.gateway_url}/v1/runs", json=body, headers=headers, timeout=300)
    run: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise ClusterError(f"the plain-language run failed: {response.text}")
    return run


def _print_run(run: dict[str, Any], console: Console) -> None:
    planning = run["planning"]
    table = Table(title=f"a plain-language run, planned by {planning['planner']} in "
                  f"{planning['latency_ms']:.1f} ms on the {planning['tier']}")  # fmt: skip
    for column in ("step", "tool", "output", "plan", "latency", "$ (modelled)"):
        table.add_column(column)
    for step in run["steps"]:
        output = step.get("output", {})
        table.add_row(
            str(step["node"]),
            step["task"],
            (output.get("text") or step.get("error") or "")[:50],
            step.get("plan") or step["status"],
            f"{step['latency_ms']:.0f} ms" if step.get("latency_ms") is not None else "-",
            f"{step['usd_modelled']:.2e}" if step.get("usd_modelled") is not None else "-",
        )
    console.print(table)
    console.print(f"asked: {RUN_REQUEST}\nanswer: {run['answer']}")


def _placed(rate: float, request: str, ext: dict[str, Any], note: str = "") -> PlacedRow:
    m = ext["measured"]
    if ext["relaxed"]:
        note = (note + "; " if note else "") + "relaxed " + ", ".join(ext["relaxed"])
    return PlacedRow(rate, request, ext["plan"], m["latency_ms"], m["usd_modelled"], note)


def _placed_table(rows: list[PlacedRow]) -> Table:
    table = Table(
        title="the gateway places each request as the device's links slow down (EMULATED)",
        expand=True,
    )
    for col, kw in (
        ("link", {"justify": "right"}),
        ("request", {}),
        ("plan chosen", {}),
        ("latency", {"justify": "right"}),
        ("$ modelled", {"justify": "right"}),
        ("note", {}),
    ):
        table.add_column(col, no_wrap=col != "note", **kw)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            f"{r.rate_kbps:g} KB/s",
            r.request,
            r.plan,
            f"{r.latency_ms:.0f} ms",
            f"{r.usd:.2e}",
            r.note,
        )
    return table


def run_demo(spec: ClusterSpec, console: Console, state_dir: Path | None = None) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tierwise-demo-") as tmp:
        cluster = LocalCluster(spec.with_free_ports(), state_dir or Path(tmp))
        started = time.perf_counter()
        with console.status(
            "starting the cluster (3 nodes, 3 links, the gateway; the first "
            "start profiles every model)..."
        ):
            state = cluster.start(progress=lambda msg: console.log(msg))
        console.log(f"cluster healthy after {time.perf_counter() - started:.1f} s")
        try:
            name, photo = demo_photo()
            with console.status(f"asking every tier (chat prompt and photo {name})..."):
                rows = asyncio.run(_ask_every_tier(state, cluster.token, photo))
            placed: list[PlacedRow] = []
            totals: dict[str, float] = {}
            run: dict[str, Any] | None = None
            if state.spec.gateway is not None:
                with console.status(
                    "sending requests through the gateway at 2000, 300 and 50 KB/s..."
                ):
                    placed, totals = _gateway_rows(state, cluster.token)
                with console.status(f"a plain-language run: {RUN_REQUEST!r}..."):
                    run = _plain_language_run(state, photo)
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
    if placed:
        console.print(_placed_table(placed))
        console.print(
            f"ledger: {int(totals['requests'])} gateway requests cost ${totals['usd']:.6f}; "
            f"all in the cloud they would have cost ${totals['cloud_usd']:.6f} (both modelled)"
        )
    if run is not None:
        _print_run(run, console)
    for note in _emulation_notes(spec):
        console.print(f"[yellow]{note}[/yellow]")
    return rows
