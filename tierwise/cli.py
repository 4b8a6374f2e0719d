"""The ``tierwise`` command line. Thin: each command reads its inputs and calls one package."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tierwise.config import ClusterSpec, default_spec, default_spec_text, load_spec
from tierwise.errors import ConfigError, InputError, TierwiseError
from tierwise.units import format_rate

if TYPE_CHECKING:
    from tierwise.codecs.base import TrainedCodec
    from tierwise.datasets.cifar10 import Cifar10
    from tierwise.net.link_client import LinkClient
    from tierwise.optimize.compress_train import CompressConfig
    from tierwise.optimize.train_device import Precision

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="tierwise: run each AI request on the device, an edge server or the cloud.",
)
router_app = typer.Typer(help="Train and try the learned LLM router.", no_args_is_help=True)
link_app = typer.Typer(
    no_args_is_help=True, help="Show and change the EMULATED links of a running cluster."
)
node_app = typer.Typer(no_args_is_help=True, help="Run a single node.")
config_app = typer.Typer(no_args_is_help=True, help="Check and print cluster specs.")
gateway_app = typer.Typer(no_args_is_help=True, help="Run the gateway.")
bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks: print tables, write bench/results/."
)
app.add_typer(link_app, name="link")
app.add_typer(node_app, name="node")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")
app.add_typer(gateway_app, name="gateway")
app.add_typer(router_app, name="router")
DataOpt = Annotated[
    Path | None,
    typer.Option(help="Shared data folder (default: $TIERWISE_DATA or ../shared/data)."),
]
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Cluster spec YAML; default: the embedded one."),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where a running cluster keeps its state [env TIERWISE_STATE_DIR, ~/.tierwise/run].",
    ),
]


def _state_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("TIERWISE_STATE_DIR", "~/.tierwise/run")).expanduser()


def _spec(config: Path | None) -> ClusterSpec:
    return load_spec(config) if config else default_spec()


def _data_folder(data: Path | None) -> Path:
    return data or Path(os.environ.get("TIERWISE_DATA") or "../shared/data")


def _fail(exc: TierwiseError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/bold red] {exc.message}")
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


# ---------------------------------------------------------------- cluster


@app.command()
def up(config: ConfigOpt = None, state_dir: StateOpt = None) -> None:
    """Start every node and link of the spec as processes; Ctrl-C stops them all."""
    from tierwise.runtime.launcher import LocalCluster

    try:
        cluster = LocalCluster(_spec(config), _state_dir(state_dir))
        started = time.perf_counter()
        with console.status("starting nodes and links..."):
            state = cluster.start(progress=lambda msg: console.log(msg))
    except TierwiseError as exc:
        raise _fail(exc) from exc
    try:
        # Before anything is announced: a script that reads "Ctrl-C to stop" and signals
        # at once must not beat the handler (with SIGINT inherited as ignored, it would
        # be dropped and the cluster would run on).
        _stop_on_signals()
        console.log(f"healthy after {time.perf_counter() - started:.1f} s")
        console.print(_endpoints_table(state))
        console.print(f"state and token: {state.state_dir}   (Ctrl-C to stop)")
        while True:
            for dead in cluster.poll():
                what = f"{dead.kind} {dead.name} exited with code {dead.returncode}"
                console.print(f"[bold red]{what}[/bold red]")
                console.print(dead.log_tail)
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        cluster.stop()
    console.print("all processes stopped")


def _stop_on_signals() -> None:
    """Make Ctrl-C and SIGTERM both end the watch loop, so the finally block stops the
    children. Started in the background from a script, a process inherits SIGINT as
    ignored, and Python then never raises KeyboardInterrupt; so the handler is set here."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


@app.command()
def status(state_dir: StateOpt = None) -> None:
    """Show the endpoints of the running cluster and whether each answers."""
    from tierwise.runtime.state import ClusterState

    try:
        state = ClusterState.load(_state_dir(state_dir))
    except TierwiseError as exc:
        raise _fail(exc) from exc
    console.print(_endpoints_table(state, check=True))


def _endpoints_table(state: Any, check: bool = False) -> Table:
    import httpx

    table = Table(title=f"cluster {state.spec.name}")
    for col in ("kind", "name", "tier", "endpoint", "from device", "notes"):
        table.add_column(col)
    if check:
        table.add_column("health")

    def health(url: str) -> list[str]:
        if not check:
            return []
        try:
            return ["ok" if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 else "bad"]
        except httpx.HTTPError:
            return ["[red]down[/red]"]

    for node in state.spec.nodes:
        url = state.node_url(node.name)
        note = f"EMULATED speed ×{node.speed_factor}" if node.speed_factor < 1 else ""
        table.add_row(
            "node",
            node.name,
            node.tier,
            url,
            state.url_from("device", node.name),
            note,
            *health(url),
        )
    for link in state.spec.links:
        ep = state.links[link.name]
        e = link.emulate
        note = f"EMULATED {format_rate(e.bandwidth)}, RTT {e.rtt * 1e3:.0f} ms" if e else ""
        table.add_row(
            "link",
            link.name,
            f"{link.a}↔{link.b}",
            ep.control_url,
            "",
            note,
            *health(ep.control_url),
        )
    if state.spec.gateway is not None:
        url = state.gateway_url
        table.add_row(
            "gateway", "gateway", state.spec.gateway.tier, url, url, "API keys", *health(url)
        )
    return table


@app.command()
def demo(config: ConfigOpt = None) -> None:
    """Start the local cluster, send a chat prompt and a photo to each tier, print a table."""
    from tierwise.demo import run_demo

    try:
        run_demo(_spec(config), console)
    except TierwiseError as exc:
        raise _fail(exc) from exc


# ---------------------------------------------------------------- links


def _on_link(
    name: str, state_dir: Path | None, action: Callable[[LinkClient], dict[str, Any]]
) -> None:
    """Find the running cluster's link ``name``, apply ``action`` to it, print the result."""
    from tierwise.net.link_client import LinkClient
    from tierwise.runtime.state import ClusterState, read_token

    try:
        directory = _state_dir(state_dir)
        state = ClusterState.load(directory)
        url = state.link_endpoints(name).control_url
        with LinkClient(url, read_token(directory)) as client:
            status = action(client)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    online = "online" if status["online"] else "[red]DOWN[/red]"
    console.print(
        f"link {status['name']} (EMULATED): {online}, up {format_rate(status['bandwidth'])}, "
        f"down {format_rate(status['downlink'])}, RTT {status['rtt'] * 1e3:.0f} ms, "
        f"loss {status['loss']:.1%}; moved {status['bytes_up']} B up, "
        f"{status['bytes_down']} B down"
    )


@link_app.command("set")
def link_set(
    name: Annotated[str, typer.Argument(help="Link name, e.g. device-edge.")],
    bandwidth: Annotated[str | None, typer.Argument(help="Rate both ways, e.g. 300KB/s.")] = None,
    downlink: Annotated[str | None, typer.Option(help="Rate b→a if different, e.g. 1MB/s.")] = None,
    rtt: Annotated[str | None, typer.Option(help="Round-trip time, e.g. 30ms.")] = None,
    loss: Annotated[float | None, typer.Option(help="Segment loss ratio, 0 <= loss < 1.")] = None,
    state_dir: StateOpt = None,
) -> None:
    """Change a link's emulated bandwidth, RTT or loss, live."""
    _on_link(name, state_dir, lambda client: client.set(bandwidth, downlink, rtt, loss))


@link_app.command("down")
def link_down(name: str, state_dir: StateOpt = None) -> None:
    """Take a link offline: open connections are cut and new ones refused."""
    _on_link(name, state_dir, lambda client: client.down())


@link_app.command("up")
def link_up(name: str, state_dir: StateOpt = None) -> None:
    """Bring a link back online."""
    _on_link(name, state_dir, lambda client: client.up())


@link_app.command("show")
def link_show(name: str, state_dir: StateOpt = None) -> None:
    """Print a link's settings and byte counters."""
    _on_link(name, state_dir, lambda client: client.show())


@link_app.command("serve", hidden=True)
def link_serve(
    state_dir: Annotated[Path, typer.Option("--state-dir")],
    link: Annotated[str, typer.Option("--link")],
) -> None:
    """Run one link proxy (started by `tierwise up`)."""
    from tierwise.runtime.serve import serve_link

    try:
        serve_link(state_dir, link)
    except TierwiseError as exc:
        raise _fail(exc) from exc


# ---------------------------------------------------------------- nodes


@node_app.command("serve")
def node_serve(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="State directory written by `tierwise up`.")
    ],
    node: Annotated[str, typer.Option("--node", help="Which node of the spec to serve.")],
) -> None:
    """Serve one node of a resolved cluster (the token comes from the spec's auth.token_env)."""
    from tierwise.runtime.serve import serve_node

    try:
        serve_node(state_dir, node)
    except TierwiseError as exc:
        raise _fail(exc) from exc


@gateway_app.command("serve")
def gateway_serve(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="State directory written by `tierwise up`.")
    ],
) -> None:
    """Serve the gateway of a resolved cluster (started by `tierwise up`)."""
    from tierwise.runtime.serve import serve_gateway

    try:
        serve_gateway(state_dir)
    except TierwiseError as exc:
        raise _fail(exc) from exc


# ---------------------------------------------------------------- config


@config_app.command("validate")
def config_validate(path: Path) -> None:
    """Check a cluster spec and print a summary, or the problems found."""
    try:
        spec = load_spec(path)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    console.print(
        f"{path}: ok — {len(spec.nodes)} nodes, {len(spec.links)} links, {len(spec.models)} models"
    )


@config_app.command("default")
def config_default() -> None:
    """Print the embedded default spec (a starting point for your own)."""
    sys.stdout.write(default_spec_text())


# ---------------------------------------------------------------- benchmarks

ResultsOpt = Annotated[Path, typer.Option("--out", help="Where to write JSON and Markdown.")]


@bench_app.command("runtime")
def bench_runtime(config: ConfigOpt = None, out: ResultsOpt = Path("bench/results")) -> None:
    """Node start-up, SmolLM2 tokens/s, EfficientNet-Lite0 ms/image, link-rate accuracy."""
    from tierwise.bench.runtime import run_runtime_bench

    try:
        run_runtime_bench(_spec(config), console, out)
    except TierwiseError as exc:
        raise _fail(exc) from exc


# ---------------------------------------------------------------- ledger


LedgerOpt = Annotated[
    str | None,
    typer.Option("--ledger", help="SQLAlchemy URL; default: the running cluster's ledger."),
]


def _ledger(url: str | None, state_dir: Path | None) -> Any:
    from tierwise.ledger.store import Ledger
    from tierwise.runtime.state import ClusterState

    if url is None:
        url = ClusterState.load(_state_dir(state_dir)).ledger_url
    return Ledger(url)


@app.command()
def report(
    ledger: LedgerOpt = None,
    state_dir: StateOpt = None,
    days: Annotated[float | None, typer.Option(help="Only the last N days.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Spend, tokens, bytes, joules and latency by tier, model and day, against all-cloud."""
    import json

    from tierwise.ledger.report import build_report, report_json

    try:
        store = _ledger(ledger, state_dir)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    since = time.time() - days * 86400 if days else 0.0
    result = build_report(store.rows(since))
    store.close()
    if as_json:
        sys.stdout.write(json.dumps(report_json(result), indent=2) + "\n")
        return
    for title, groups in (
        ("by tier", result.by_tier),
        ("by model", result.by_model),
        ("by day", result.by_day),
    ):
        console.print(_report_table(title, groups))
    t = result.total
    share = f"{t.savings / t.cloud_usd:.1%}" if t.cloud_usd > 0 else "n/a"
    console.print(
        f"{t.requests} requests ({t.served} served; {dict(result.by_status)}): spent ${t.usd:.6f}; "
        f"all-cloud would have cost ${t.cloud_usd:.6f}; saved ${t.savings:.6f} ({share})"
    )


def _report_table(title: str, groups: dict[str, Any]) -> Table:
    from tierwise.units import format_bytes

    table = Table(title=title)
    for col in (
        "",
        "requests",
        "spent $",
        "all-cloud $",
        "saved $",
        "tokens in/out",
        "bytes ↑/↓",
        "joules",
        "p50 ms",
    ):
        table.add_column(col, justify="right" if col else "left")
    for key, g in sorted(groups.items()):
        table.add_row(
            key,
            str(g.requests),
            f"{g.usd:.6f}",
            f"{g.cloud_usd:.6f}",
            f"{g.savings:.6f}",
            f"{g.tokens_in}/{g.tokens_out}",
            f"{format_bytes(g.bytes_up)}/{format_bytes(g.bytes_down)}",
            f"{g.joules:.1f}",
            f"{g.p50_ms:.0f}",
        )
    return table


@app.command()
def explain(
    request_id: Annotated[str, typer.Argument(help="The id in X-Tierwise-Request-Id.")],
    ledger: LedgerOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show one request: what ran, what it cost, and every alternative that was considered."""
    try:
        store = _ledger(ledger, state_dir)
        rec = store.get(request_id)
        store.close()
    except TierwiseError as exc:
        raise _fail(exc) from exc
    if rec is None:
        err_console.print(f"[bold red]error:[/bold red] no request {request_id!r} in the ledger")
        raise typer.Exit(1)
    console.print(
        f"request {rec.id} ({rec.task} {rec.model}, key {rec.api_key}): {rec.status}, "
        f"plan {rec.plan} on {rec.tiers or '-'}{' [OFFLINE]' if rec.offline else ''}\n"
        f"  latency {rec.latency_ms:.1f} ms (predicted {rec.predicted_latency_ms:.1f}); "
        f"${rec.usd:.9f} (predicted {rec.predicted_usd:.9f}; all-cloud {rec.cloud_usd:.9f}); "
        f"{rec.joules:.3f} J; {rec.bytes_up} B up, {rec.bytes_down} B down; "
        f"tokens {rec.tokens_in}/{rec.tokens_out}"
    )
    if rec.error:
        console.print(f"  error: {rec.error}")
    info = rec.explain
    if info.get("relaxed"):
        console.print(f"  relaxed constraints: {', '.join(info['relaxed'])}")
    for attempt in info.get("attempts", []):
        console.print(
            f"  attempt {attempt['plan']}: {attempt['outcome']} {attempt.get('error') or ''}"
        )
    table = Table(title="plans considered")
    for col in ("rank", "plan", "latency ms", "$", "J", "bytes ↑", "quality", "excluded because"):
        table.add_column(col)
    for row in sorted(info.get("considered", []), key=lambda r: r["rank"] or 10**6):
        table.add_row(
            str(row["rank"] or "-"),
            row["plan"],
            f"{row['latency_ms']:.1f}",
            f"{row['usd']:.2e}",
            f"{row['joules']:.2f}",
            str(row["bytes_up"]),
            str(row["quality"]),
            row["excluded"] or "",
        )
    console.print(table)


@app.command()
def profile(
    state_dir: StateOpt = None,
    photos: Annotated[int, typer.Option(help="Real photos for codec accuracy.")] = 24,
) -> None:
    """Measure every node's stages and chat speed, and every codec's size and accuracy."""
    from tierwise.ledger.store import Ledger
    from tierwise.optimize.profile import profile_cluster
    from tierwise.placement.profiles import Profiles
    from tierwise.runtime.state import ClusterState, read_token

    try:
        directory = _state_dir(state_dir)
        state = ClusterState.load(directory)
        store = Ledger(state.ledger_url)
        profiles = Profiles()
        with console.status("profiling..."):
            profile_cluster(state, read_token(directory), profiles, console.log, photos=photos)
        store.save_profiles(profiles.rows())
        store.close()
    except TierwiseError as exc:
        raise _fail(exc) from exc
    console.print(
        f"stored {len(profiles)} measurements in {state.ledger_url}; "
        "the gateway picks them up when it next starts"
    )


@bench_app.command("placement")
def bench_placement(
    config: ConfigOpt = None,
    out: ResultsOpt = Path("bench/results"),
    photos: Annotated[int, typer.Option(help="Photos per (bandwidth, plan) cell.")] = 20,
    steps: Annotated[str | None, typer.Option(help="Comma-separated KB/s steps.")] = None,
    codecs: Annotated[
        list[Path] | None,
        typer.Option(help="Learned EfficientNet-Lite0 codecs to add as plans (repeatable)."),
    ] = None,
) -> None:
    """Every fixed plan and auto at each bandwidth; regret, step changes, planner cost, LLM $."""
    from tierwise.bench.placement import run_placement_bench

    rates = [float(s) for s in steps.split(",")] if steps else None
    try:
        run_placement_bench(_spec(config), console, out, photos=photos, steps=rates, codecs=codecs)
    except TierwiseError as exc:
        raise _fail(exc) from exc


@router_app.command("train")
def router_train(
    data: Annotated[Path, typer.Option(help="RouterBench-form CSV to learn from.")],
    out: Annotated[Path, typer.Option(help="Where to write the router (.npz).")] = Path(
        "router.npz"
    ),
    encoder: Annotated[str, typer.Option(help="minilm-static (fast) or minilm.")] = "minilm-static",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
) -> None:
    """Learn which model answers which prompt; the learner is picked by cross-validation."""
    from tierwise.routing.dataset import load_csv
    from tierwise.routing.features import make_encoder
    from tierwise.routing.router import Router

    try:
        if folds < 2:
            raise InputError("--folds must be at least 2", param="folds")
        router = Router.train(load_csv(data), make_encoder(encoder), k=folds, progress=console.log)
    except (TierwiseError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, TierwiseError) else InputError(str(exc))) from exc
    router.save(out)
    table = Table(title=f"cross-validated learners ({folds} folds, train data only)")
    for column in ("learner", "params", "AIQ", "log loss"):
        table.add_column(column)
    for s in router.cv:
        table.add_row(s.kind, str(s.params), f"{s.aiq:.4f}", f"{s.log_loss:.4f}")
    console.print(table)
    console.print(f"kept [bold]{router.learner.kind}[/]; wrote {out}")


@router_app.command("route")
def router_route(
    prompt: str,
    router_path: Annotated[Path, typer.Option("--router", help="A trained router.")] = Path(
        "router.npz"
    ),
    min_quality: Annotated[float | None, typer.Option(help="Least predicted accuracy.")] = None,
    max_usd: Annotated[float | None, typer.Option(help="Most dollars per query.")] = None,
) -> None:
    """Show which model the router picks for one prompt, and why."""
    from tierwise.config import Policy
    from tierwise.routing.router import Router

    try:
        router = Router.load(router_path)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    decision = router.decide(prompt, Policy(min_quality=min_quality, max_usd=max_usd))
    table = Table(title=f"route: {decision.model} ({decision.decision_ms:.2f} ms)")
    for column in ("model", "P(correct)", "$/query"):
        table.add_column(column)
    for m in router.models:
        mark = "[bold]" if m == decision.model else ""
        table.add_row(
            f"{mark}{m}", f"{decision.p_correct[m]:.3f}", f"{decision.expected_usd[m]:.6f}"
        )
    console.print(table)


@bench_app.command("routing")
def bench_routing(
    data: Annotated[Path, typer.Option(help="Folder of <task>_train.csv / <task>_test.csv.")],
    out: ResultsOpt = Path("bench/results"),
    encoders: Annotated[str, typer.Option(help="Comma-separated encoders to compare.")] = (
        "minilm-static,minilm"
    ),
) -> None:
    """Router, cascade, kNN, single models, random mixing and oracle on each task's test split."""
    from tierwise.bench.routing import run_routing_bench

    try:
        run_routing_bench(data, console, out, encoders=encoders.split(","))
    except TierwiseError as exc:
        raise _fail(exc) from exc


@bench_app.command("compression")
def bench_compression(
    model: Annotated[Path, typer.Option(help="Backbone from `tierwise train cifar10`.")] = Path(
        "models/cifar10-net.npz"
    ),
    codecs: Annotated[
        list[Path] | None,
        typer.Option(help="Codec files, learned or fitted (default: models/codecs/*.npz)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="CIFAR-10 test images (default all).")
    ] = None,
    lite_limit: Annotated[
        int, typer.Option(min=1, help="Upscaled test images for EfficientNet-Lite.")
    ] = 500,
    vqa: Annotated[Path, typer.Option(help="VQA network from `tierwise train vqa`.")] = Path(
        "models/vqa-net.npz"
    ),
    tasks: Annotated[
        str, typer.Option(help="Comma-separated: cifar10, lite, vqa (others keep old rows).")
    ] = "cifar10,lite,vqa",
    data: DataOpt = None,
    out: ResultsOpt = Path("bench/results"),
) -> None:
    """Bytes per image against accuracy: input codecs, uniform, learned and fitted codecs."""
    from tierwise.bench.compression import run_compression_bench
    from tierwise.cache import cache_dir
    from tierwise.codecs.codec_file import read_header
    from tierwise.datasets.cifar10 import load_cifar10

    chosen = {t.strip() for t in tasks.split(",") if t.strip()}
    if not chosen <= {"cifar10", "lite", "vqa"}:
        raise _fail(InputError(f"--tasks: expected cifar10, lite or vqa, got {tasks!r}"))
    files = codecs if codecs is not None else sorted(Path("models/codecs").glob("*.npz"))
    if "lite" not in chosen:
        files = [f for f in files if not read_header(f).model.startswith("efficientnet-")]
    folder = _data_folder(data)
    try:
        dataset = load_cifar10(folder, cache_dir()) if chosen & {"cifar10", "lite"} else None
        backbone = model if model.is_file() and "cifar10" in chosen else None
        if backbone is None and "cifar10" in chosen:
            console.print(f"[yellow]no CIFAR-10 network at {model}: CIFAR-10 is left out[/]")
        net = vqa if vqa.is_file() and "vqa" in chosen else None
        if net is None and "vqa" in chosen:
            console.print(f"[yellow]no VQA network at {vqa}: easy-vqa is left out[/]")
        run_compression_bench(
            dataset, backbone, files, console, out, limit, lite_limit, net,
            keep_others=chosen != {"cifar10", "lite", "vqa"},
        )  # fmt: skip
    except (TierwiseError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, TierwiseError) else InputError(str(exc))) from exc


@bench_app.command("optimize")
def bench_optimize(
    model: Annotated[
        Path, typer.Option(help="The CIFAR-10 network from `tierwise train cifar10`.")
    ] = Path("models/cifar10-net.npz"),
    variants: Annotated[
        Path, typer.Option(help="Where `tierwise optimize` wrote variants.")
    ] = Path("models/variants"),
    lite: Annotated[bool, typer.Option(help="Include EfficientNet-Lite0 and its variants.")] = True,
    held_out: Annotated[
        int, typer.Option(min=0, help="Upscaled CIFAR-10 test images for Lite0 (plus photos).")
    ] = 300,
    threads: Annotated[int, typer.Option(min=1, help="Threads per model.")] = 2,
    repeats: Annotated[int, typer.Option(min=3, help="Timed batch-1 runs per model.")] = 30,
    data: DataOpt = None,
    out: ResultsOpt = Path("bench/results"),
) -> None:
    """Size, latency, memory, quality and joules of every variant against its original."""
    from tierwise.bench.optimize import (
        add_variants,
        cifar_group,
        lite_group,
        measure,
        report,
    )
    from tierwise.cache import cache_dir
    from tierwise.datasets.cifar10 import load_cifar10

    folder = _data_folder(data)
    try:
        cifar = load_cifar10(folder, cache_dir())
    except InputError as exc:
        console.print(f"[yellow]{exc.message}: CIFAR-10 sets are left out[/]")
        cifar = None
    groups = []
    if lite:
        groups.append(lite_group(cifar, held_out))
    if cifar is not None and model.is_file():
        groups.append(cifar_group(model, cifar, "cifar10-net"))
    for group in groups:
        add_variants(group, variants)
    if not groups:
        raise _fail(InputError("nothing to measure: no --lite and no CIFAR-10 network"))
    empty = measure(groups, threads, repeats, console)
    report(groups, empty, threads, out, console)


cascade_app = typer.Typer(help="The live cascade: local model first, escalate when unsure.")
app.add_typer(cascade_app, name="cascade")


@cascade_app.command("calibrate")
def cascade_calibrate(
    data: Annotated[Path, typer.Option(help="CSV with prompt,answer or RouterBench form.")],
    target: Annotated[float, typer.Option(help="Accuracy the kept local answers must reach.")] = (
        0.9
    ),
    limit: Annotated[int, typer.Option(help="Prompts to try (the first N).")] = 200,
    max_tokens: Annotated[int, typer.Option(help="Answer length for each prompt.")] = 8,
    model: Annotated[str, typer.Option(help="The local llama.cpp model of the spec.")] = "smollm2",
    config: ConfigOpt = None,
    out: Annotated[Path, typer.Option(help="Where to write the calibration JSON.")] = Path(
        "bench/results/cascade-calibration.json"
    ),
) -> None:
    """Run the local model on labelled prompts and pick the cascade_confidence threshold."""
    import json

    from rich.progress import Progress

    from tierwise.config import LlamaCppModel
    from tierwise.models.base import ChatMessage, ChatParams
    from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf
    from tierwise.routing.calibrate import calibrate, labelled_prompts, run_trials

    spec = _spec(config)
    chosen = spec.models.get(model)
    if not isinstance(chosen, LlamaCppModel):
        raise _fail(InputError(f"--model {model!r} is not a llama-cpp model of the spec"))
    if not 0 < target <= 1:
        raise _fail(InputError("--target must be in (0, 1]", param="target"))
    try:
        items = labelled_prompts(data)[:limit]
    except TierwiseError as exc:
        raise _fail(exc) from exc
    llm = LlamaCppChat(model, resolve_gguf(chosen.gguf), chosen.n_ctx, None, max_tokens)

    def answer(prompt: str) -> tuple[str, float]:
        chunks = list(
            llm.stream(
                [ChatMessage("user", prompt)], ChatParams(max_tokens=max_tokens, temperature=0.0)
            )
        )
        return "".join(c.text for c in chunks), chunks[-1].mean_logprob or 0.0

    with Progress(console=console) as progress:
        task = progress.add_task(f"{model} answering", total=len(items))
        trials = run_trials(items, answer, lambda n: progress.update(task, completed=n))
    llm.close()
    result = calibrate(trials, target)
    table = Table(title=f"cascade calibration: {model} on {data.name} ({len(trials)} prompts)")
    for column in ("threshold", "kept locally", "accuracy of kept"):
        table.add_column(column)
    step = max(1, len(result.curve) // 10)
    for t, share, acc in result.curve[step - 1 :: step]:
        table.add_row(f"{t:.3f}", f"{share:.0%}", f"{acc:.3f}")
    console.print(table)
    console.print(
        f"overall accuracy {result.overall_accuracy:.3f}; confidence AUROC "
        f"{result.auroc:.3f} (0.5 = no signal)"
    )
    if result.threshold is None:
        console.print(
            f"[yellow]no threshold keeps answers {target:.0%} right: escalate "
            "everything (do not use the cascade for this task)[/]"
        )
    else:
        console.print(
            f"threshold [bold]{result.threshold:.4f}[/]: keeps "
            f"{result.kept_share:.0%} local at {result.kept_accuracy:.3f}; use "
            f"`X-Tierwise-Policy: cascade_confidence={result.threshold:.4f}`"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.__dict__, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")


train_app = typer.Typer(help="Train the models tierwise owns.", no_args_is_help=True)
app.add_typer(train_app, name="train")


PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="fp32, or bf16: mixed-precision forward passes, 2-5x faster on CPUs with AMX "
        "or AVX512-BF16 (slower on others)."
    ),
]


def _precision(value: str) -> Precision:
    if value not in ("fp32", "bf16"):
        raise _fail(InputError(f"--precision: expected fp32 or bf16, got {value!r}"))
    return value  # type: ignore[return-value]


@train_app.command("cifar10")
def train_cifar10(
    data: DataOpt = None,
    # the defaults are the shipped network's recipe: 89.7% (90.6% with flip TTA), 62 min on 2 cores
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the 50,000 images.")] = 24,
    width: Annotated[int, typer.Option(min=4, help="Channels of the first stage.")] = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (one-cycle).")] = 0.2,
    device: Annotated[str, typer.Option(help="cpu, or cuda where there is one.")] = "cpu",
    precision: PrecisionOpt = "fp32",
    out: Annotated[Path, typer.Option(help="Where to write the network (.npz).")] = Path(
        "models/cifar10-net.npz"
    ),
) -> None:
    """Train the compact CIFAR-10 network; the weights are ours, with a model card."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tierwise.cache import cache_dir
    from tierwise.datasets.cifar10 import load_cifar10
    from tierwise.models.cifar_net import save
    from tierwise.optimize.train_cifar import TrainConfig, train
    from tierwise.optimize.train_device import check_device

    folder = _data_folder(data)
    mixed = _precision(precision)
    try:
        check_device(device)
        dataset = load_cifar10(folder, cache_dir())
    except TierwiseError as exc:
        raise _fail(exc) from exc
    config = TrainConfig(epochs=epochs, width=width, lr=lr, device=device, precision=mixed)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=1, note="")

        def report(done: int, total: int, row: dict[str, float]) -> None:
            progress.update(task, completed=done, total=total)
            if row:
                note = (
                    f"epoch {int(row['epoch'])}: test {row['test_accuracy']:.2%}"
                    f" ({row['test_accuracy_flip_tta']:.2%} with flip TTA)"
                )
                progress.update(task, note=note)
                # a line per epoch stays in the scrollback, and in a log file where no bar shows
                progress.console.print(f"{note}, {row['seconds'] / 60:.1f} min")

        try:
            result = train(dataset, config, report)
        except TierwiseError as exc:
            raise _fail(exc) from exc
    card = {
        "dataset": "CIFAR-10 (JPEG re-encoded)",
        "test_accuracy": result.test_accuracy,
        "test_accuracy_flip_tta": result.history[-1]["test_accuracy_flip_tta"],
        "train_seconds": round(result.seconds, 1),
        "config": config.__dict__,
        "history": result.history,
    }
    save(result.net, width, card, out)
    console.print(
        f"test accuracy {result.test_accuracy:.2%} "
        f"({card['test_accuracy_flip_tta']:.2%} with flip TTA) after {epochs} epochs "
        f"({result.seconds / 60:.1f} min on {device}); wrote {out}"
    )


@train_app.command("vqa")
def train_vqa_command(
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the 4,000 images.")] = 8,
    width: Annotated[int, typer.Option(min=4, help="Channels of the first image stage.")] = 16,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (Adam).")] = 2e-3,
    out: Annotated[Path, typer.Option(help="Where to write the network (.npz).")] = Path(
        "models/vqa-net.npz"
    ),
) -> None:
    """Train the easy-vqa network (image CNN × question bag of words) from the easy-vqa wheel."""
    from tierwise.cache import cache_dir
    from tierwise.datasets.easy_vqa import load_easy_vqa
    from tierwise.models.vqa_net import save
    from tierwise.optimize.train_vqa import VqaTrainConfig, train_vqa

    try:
        data = load_easy_vqa(cache_dir())
    except TierwiseError as exc:
        raise _fail(exc) from exc
    config = VqaTrainConfig(epochs=epochs, width=width, lr=lr)
    with _phase_progress() as step:
        result = train_vqa(data, config, lambda done, total, _row: step("training", done, total))
    card = {
        "dataset": "easy-vqa (the easy-vqa wheel)",
        "test_accuracy": result.test_accuracy,
        "train_seconds": round(result.seconds, 1),
        "config": config.__dict__,
        "history": result.history,
    }
    meta = {"vocab": data.vocab, "answers": data.answers, "width": width, "card": card}
    save(result.net, meta, out)
    console.print(
        f"test accuracy {result.test_accuracy:.2%} on {len(data.test)} questions after "
        f"{epochs} epochs ({result.seconds / 60:.1f} min); wrote {out}"
    )


compress_app = typer.Typer(help="Learned feature codecs for split inference.", no_args_is_help=True)
app.add_typer(compress_app, name="compress")
CodecModelOpt = Annotated[
    str,
    typer.Option(help="A network from `tierwise train cifar10` (.npz), or efficientnet-lite0/1/2."),
]
ModelNameOpt = Annotated[
    str | None, typer.Option(help="The model's name in cluster specs (default: derived).")
]
TestImagesOpt = Annotated[
    int | None, typer.Option(min=1, help="Test images (default: all; 1,000 for Lite).")
]
CodecOutOpt = Annotated[Path, typer.Option(help="Folder for the codec files (NAME.npz).")]


@compress_app.command("train")
def compress_train(
    split: Annotated[int, typer.Option(min=1, help="Split point: stages before it send.")],
    beta: Annotated[
        list[float], typer.Option(min=0.0, help="Rate weight per bit; repeat for a sweep.")
    ],
    model: CodecModelOpt = "models/cifar10-net.npz",
    model_name: ModelNameOpt = None,
    latent: Annotated[int, typer.Option(min=1, help="Latent channels of the bottleneck.")] = 16,
    stride: Annotated[int, typer.Option(min=1, max=4, help="Spatial downsampling.")] = 1,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the cached features.")] = 4,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (Adam).")] = 2e-3,
    labels: Annotated[
        bool, typer.Option(help="Use labels; --no-labels distils from the unsplit model only.")
    ] = True,
    images: Annotated[
        int | None, typer.Option(min=1, help="Training images (default: all; 5,000 for Lite).")
    ] = None,
    test_images: TestImagesOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Codec name (default MODEL-sSPLIT-bBETA).")
    ] = None,
    data: DataOpt = None,
    out: CodecOutOpt = Path("models/codecs"),
) -> None:
    """Train task-oriented bottlenecks at a split point, backbone frozen; save each with a card.

    EfficientNet-Lite codecs learn without labels, by distillation on upscaled CIFAR-10."""
    from tierwise.arrays_file import read_format
    from tierwise.cache import cache_dir
    from tierwise.datasets.cifar10 import load_cifar10
    from tierwise.models.vqa_net import FORMAT as VQA_FORMAT
    from tierwise.optimize.compress_train import CompressConfig

    lite = model.removeprefix("efficientnet-") in ("lite0", "lite1", "lite2")
    vqa = not lite and read_format(Path(model)) == VQA_FORMAT
    owner = model_name or (model if lite else "vqa-net" if vqa else "cifar10-net")
    stem = name or f"{owner}-s{split}"
    names = [stem if name and len(beta) == 1 else f"{stem}-b{b:g}" for b in beta]
    folder = _data_folder(data)
    config = CompressConfig(
        split=split, beta=beta[0], latent=latent, stride=stride, epochs=epochs, lr=lr
    )
    variants = tuple(zip(beta, names, strict=True))
    try:
        if vqa:
            from tierwise.datasets.easy_vqa import load_easy_vqa
            from tierwise.optimize.compress_vqa import compress_vqa

            questions = load_easy_vqa(cache_dir())
            with _phase_progress() as step:
                codecs = compress_vqa(Path(model), owner, config, variants, questions, labels, step)
        else:
            dataset = load_cifar10(folder, cache_dir())
            codecs = _compress_images(
                model, lite, owner, config, variants, labels, images, test_images, dataset
            )
    except (TierwiseError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, TierwiseError) else InputError(str(exc))) from exc
    _report_codecs(codecs, out)


@compress_app.command("fit")
def compress_fit(
    split: Annotated[int, typer.Option(min=1, help="Split point: stages before it send.")],
    bits: Annotated[
        list[int], typer.Option(min=4, max=8, help="Bits per value (4-8); repeat for several.")
    ],
    model: CodecModelOpt = "models/cifar10-net.npz",
    model_name: ModelNameOpt = None,
    images: Annotated[
        int | None, typer.Option(min=1, help="Images to fit on (default: all; 5,000 for Lite).")
    ] = None,
    test_images: TestImagesOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Codec name (default MODEL-sSPLIT-qBITS).")
    ] = None,
    data: DataOpt = None,
    out: CodecOutOpt = Path("models/codecs"),
) -> None:
    """Fit quantizers at a split point: one range for the tensor and per-channel code
    tables, learned from unlabelled images. Nothing is trained; seconds after the features.

    Best where a plain q-codec's per-channel ranges would outweigh the codes, such as
    EfficientNet-Lite's pooled embedding (split 6)."""
    from tierwise.cache import cache_dir
    from tierwise.datasets.cifar10 import load_cifar10
    from tierwise.optimize.compress_job import fit_job

    lite = model.removeprefix("efficientnet-") in ("lite0", "lite1", "lite2")
    owner = model_name or (model if lite else "cifar10-net")
    stem = name or f"{owner}-s{split}"
    names = [stem if name and len(bits) == 1 else f"{stem}-q{b}" for b in bits]
    try:
        dataset = load_cifar10(_data_folder(data), cache_dir())
        with _phase_progress() as step:
            if lite:
                from tierwise.optimize.compress_lite import prepare_lite

                variant = model.removeprefix("efficientnet-")
                prepared = prepare_lite(
                    owner, variant, split, dataset, images or 5000, test_images or 1000, step
                )
            else:
                from tierwise.optimize.compress_cifar import prepare_cifar

                prepared = prepare_cifar(
                    Path(model), owner, split, dataset, False, images, test_images, step
                )
            codecs = fit_job(prepared, tuple(zip(bits, names, strict=True)), step)
    except (TierwiseError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, TierwiseError) else InputError(str(exc))) from exc
    _report_codecs(codecs, out)


def _compress_images(
    model: str,
    lite: bool,
    owner: str,
    config: CompressConfig,
    variants: tuple[tuple[float, str], ...],
    labels: bool,
    images: int | None,
    test_images: int | None,
    dataset: Cifar10,
) -> list[TrainedCodec]:
    """EfficientNet-Lite (by distillation on upscaled CIFAR-10) or our CIFAR-10 network."""
    with _phase_progress() as step:
        if lite:
            from tierwise.optimize.compress_lite import compress_lite

            variant = model.removeprefix("efficientnet-")
            return compress_lite(
                owner, variant, config, variants, dataset, images or 5000, test_images or 1000, step
            )
        from tierwise.optimize.compress_cifar import compress_cifar

        return compress_cifar(
            Path(model), owner, config, variants, dataset, labels, images, test_images, step
        )


def _report_codecs(codecs: list[TrainedCodec], out: Path) -> None:
    for codec in codecs:
        codec.save(out / f"{codec.name}.npz")
        m = codec.card["measured"]
        accuracy = "" if m["accuracy"] is None else f", accuracy {m['accuracy']:.2%}"
        console.print(
            f"{codec.name}: {m['payload_bytes']:.1f} B payload per image "
            f"({m['wire_bytes']:.1f} B on the wire), agreement {m['agreement']:.2%}{accuracy} "
            f"on {codec.card['measured_on']}; wrote {out / (codec.name + '.npz')}"
        )


@contextlib.contextmanager
def _phase_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per phase of a long job; ``step(phase, done, total)`` drives it.

    Into a log file or pipe (no terminal) Rich would show nothing until the end, so there
    a line is printed at each tenth of each phase instead."""
    if not console.is_terminal:
        yield _phase_lines()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        tasks: dict[str, Any] = {}

        def step(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        yield step


def _phase_lines() -> Callable[[str, int, int], None]:
    started = time.perf_counter()
    printed: dict[str, int] = {}

    def step(phase: str, done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if printed.get(phase, -1) < tenth:
            printed[phase] = tenth
            line = f"[{time.perf_counter() - started:7.1f} s] {phase}: {done}/{total}"
            console.print(line, markup=False, highlight=False)

    return step


# ---------------------------------------------------------------- optimize


@app.command()
def optimize(
    model: Annotated[
        str,
        typer.Argument(
            help="efficientnet-lite0/1/2, a network from `tierwise train cifar10` (.npz), or "
            "with --distill a student such as cifar-net:w12."
        ),
    ],
    export: Annotated[
        str | None, typer.Option(help="onnx: export only (every variant is ONNX in the end).")
    ] = None,
    quantize: Annotated[
        str, typer.Option(help="int8 (static, calibrated), int8-dynamic, or none.")
    ] = "none",
    calibration: Annotated[
        Path | None, typer.Option(help="Folder of images to calibrate static int8 on.")
    ] = None,
    prune: Annotated[
        float | None, typer.Option(help="Fraction of channels to remove, in (0, 1).")
    ] = None,
    distill: Annotated[
        str | None, typer.Option(help="Teacher network to distil the MODEL student from.")
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Distillation or post-pruning fine-tune passes.")
    ] = 4,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Peak learning rate.")] = None,
    finetune_images: Annotated[
        Path | None,
        typer.Option(help="Images to recover a pruned EfficientNet-Lite on (default CIFAR-10)."),
    ] = None,
    finetune_count: Annotated[
        int, typer.Option(min=1, help="CIFAR-10 training images to recover a pruned Lite on.")
    ] = 2000,
    held_out_images: Annotated[
        int, typer.Option(min=0, help="Upscaled CIFAR-10 test images to measure Lite on.")
    ] = 500,
    name: Annotated[str | None, typer.Option(help="Variant name (default from the steps).")] = None,
    model_name: Annotated[
        str | None, typer.Option(help="The model's name in cluster specs (default: derived).")
    ] = None,
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Variants folder nodes load from.")] = Path(
        "models/variants"
    ),
    device: Annotated[
        str, typer.Option(help="Where distillation and fine-tuning train: cpu, or cuda.")
    ] = "cpu",
    precision: PrecisionOpt = "fp32",
    weight_bits: Annotated[
        int | None,
        typer.Option(
            help="Static int8 weight width, 7 or 8 (default: 8 where this CPU has VNNI, "
            "else 7). Give 7 for devices without VNNI: their int8 kernels can saturate on "
            "8-bit weights."
        ),
    ] = None,
    allow_requantize: Annotated[
        bool, typer.Option(help="GGUF: quantize a file that is already quantized.")
    ] = False,
) -> None:
    """Quantize, prune or distil a vision model into a variant the planner can place;
    or quantize a GGUF chat model with llama.cpp (MODEL.gguf --quantize q4_k_m)."""
    from tierwise.optimize.optimize_run import OptimizeRequest
    from tierwise.optimize.optimize_run import optimize as run

    if model.endswith(".gguf"):
        others = {
            "--prune": prune,
            "--distill": distill,
            "--export": export,
            "--calibration": calibration,
            "--weight-bits": weight_bits,
        }
        given = [name for name, value in others.items() if value is not None]
        if given:
            refused = ", ".join(given)
            raise _fail(InputError(f"MODEL: a GGUF model takes only --quantize, not {refused}"))
        folder = Path("models/gguf") if out == Path("models/variants") else out
        _optimize_gguf(Path(model), quantize, folder, allow_requantize)
        return
    modes = {"none": "none", "int8": "static", "int8-dynamic": "dynamic"}
    if quantize not in modes:
        expected = "expected int8, int8-dynamic or none"
        raise _fail(InputError(f"--quantize: {expected}, got {quantize!r}"))
    request = OptimizeRequest(
        model=model,
        model_name=model_name,
        name=name,
        export=export,
        quantize=modes[quantize],  # type: ignore[arg-type]
        calibration=calibration,
        prune=prune,
        distill=distill,
        epochs=epochs,
        lr=lr,
        finetune_images=finetune_images,
        finetune_count=finetune_count,
        held_out_images=held_out_images,
        data=_data_folder(data),
        out=out,
        device=device,
        precision=_precision(precision),
        weight_bits=weight_bits,
    )
    try:
        with _phase_progress() as step:
            outcome = run(request, step)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    m = outcome.card.measured
    extra = "".join(f", {key} {value:.2%}" for key, value in m.items() if key.endswith("accuracy"))
    console.print(
        f"{outcome.card.base}:{outcome.card.name}: agreement {m['agreement']:.2%} on "
        f"{int(m['n'])} held-out images{extra}; {int(m['params']):,} parameters; "
        f"wrote {outcome.folder}"
    )
    if m["agreement"] < 0.9:
        console.print(
            "[yellow]warning: this variant disagrees with its base on more than 10% of the "
            "held-out images; nodes will serve it, so give policies a min_quality, or delete "
            f"{outcome.folder}[/]"
        )


def _optimize_gguf(source: Path, qtype: str, folder: Path, allow_requantize: bool) -> None:
    from tierwise.optimize.gguf_quantize import quantize_gguf

    try:
        with console.status(f"quantizing {source.name} to {qtype} with llama.cpp..."):
            out, card = quantize_gguf(source, qtype, folder, allow_requantize)
    except TierwiseError as exc:
        raise _fail(exc) from exc
    console.print(
        f"{out}: {card.type}, {card.bytes_after / 1e6:.1f} MB from {card.bytes_before / 1e6:.1f} "
        f"MB ({card.bytes_before / card.bytes_after:.2f}× smaller); top next token agrees with "
        f"{card.source_type} at {card.next_token_agreement:.1%} of {card.positions} positions; "
        f"{card.seconds:.1f} s"
    )
    console.print(
        "serve it from a node: add to the spec's models\n"
        f"  {out.stem}:\n    kind: llama-cpp\n    gguf: {{path: {out}}}\n"
        "and list it in that node's models; the planner then profiles and places it."
    )


# ---------------------------------------------------------------- federated learning


@bench_app.command("fl")
def bench_fl(
    data: DataOpt = None,
    out: ResultsOpt = Path("bench/results"),
    clients: Annotated[int, typer.Option(min=2, help="Clients in every run.")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds in every run.")] = 30,
    local_epochs: Annotated[int, typer.Option(min=1, help="Local epochs per round.")] = 1,
    model: Annotated[str, typer.Option(help="head or cnn (see `tierwise fl run`).")] = "head",
    image_size: Annotated[int, typer.Option(help="Pixels the head's backbone sees.")] = 128,
    lr: Annotated[float, typer.Option(help="Client SGD learning rate.")] = 0.003,
    partition: Annotated[
        list[str] | None, typer.Option(help="Repeat for several (default: iid, dirichlet:0.5).")
    ] = None,
    compress: Annotated[
        list[str] | None, typer.Option(help="Repeat for several; none is always included.")
    ] = None,
) -> None:
    """FedAvg with and without update compression: accuracy, uplink bytes, simulated time."""
    from tierwise.bench.fl import FLBenchPlan, run_fl_bench

    plan = FLBenchPlan(
        data=_data_folder(data).resolve(), out=out, clients=clients, rounds=rounds,
        local_epochs=local_epochs, model=model, image_size=image_size, lr=lr,
    )  # fmt: skip
    if partition:
        plan = dataclasses.replace(plan, partitions=partition)
    if compress:
        chosen = ["none", *[c for c in compress if c != "none"]]
        plan = dataclasses.replace(plan, compressions=chosen)
    try:
        result = run_fl_bench(plan, lambda line: console.print(line))
    except TierwiseError as exc:
        raise _fail(exc) from exc
    console.print(Path(out / "fl.md").read_text())
    for path in result["written"]:
        console.print(f"wrote {path}")


from tierwise.fl_cli import fl_app  # noqa: E402 - registered last, like the other groups

app.add_typer(fl_app, name="fl")
