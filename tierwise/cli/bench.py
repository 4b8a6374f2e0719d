"""``tierwise bench``: the benchmarks; each prints its tables and writes bench/results/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import (
    ConfigOpt,
    DataOpt,
    console,
    data_folder,
    fail,
    fail_input,
    spec_or_default,
)
from tierwise.errors import InputError, TierwiseError

bench_app = typer.Typer(
    no_args_is_help=True, help="Benchmarks: print tables, write bench/results/."
)

ResultsOpt = Annotated[Path, typer.Option("--out", help="Where to write JSON and Markdown.")]
COMPRESSION_TASKS = {"cifar10", "lite", "vqa"}


@bench_app.command("runtime")
def bench_runtime(config: ConfigOpt = None, out: ResultsOpt = Path("bench/results")) -> None:
    """Node start-up, SmolLM2 tokens/s, EfficientNet-Lite0 ms/image, link-rate accuracy."""
    from tierwise.bench.runtime import run_runtime_bench

    try:
        run_runtime_bench(spec_or_default(config), console, out)
    except TierwiseError as exc:
        raise fail(exc) from exc


@bench_app.command("placement")
def bench_placement(
    config: ConfigOpt = None,
    out: ResultsOpt = Path("bench/results"),
    data: DataOpt = None,
    photos: Annotated[int, typer.Option(min=3, help="Photos per (bandwidth, plan) cell.")] = 20,
    steps: Annotated[str | None, typer.Option(help="Comma-separated KB/s steps.")] = None,
    codecs: Annotated[
        list[Path] | None,
        typer.Option(help="Learned EfficientNet-Lite0 codecs to add as plans (repeatable)."),
    ] = None,
    profile_photos: Annotated[
        int | None,
        typer.Option(min=10, help="Photos to measure accuracy on (default: half of them)."),
    ] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(help="Re-read a saved placement.json and rewrite its tables; no run."),
    ] = None,
) -> None:
    """Fixed plans and auto under a fast, an accurate and the default quality floor at each
    bandwidth, on labelled photos; regret against the best plan meeting each floor, and
    adaptation where that plan changes."""
    from tierwise.bench.placement import reread_results, run_placement_bench

    rates = [float(s) for s in steps.split(",")] if steps else None
    try:
        if from_json is not None:
            reread_results(from_json, console)
            return
        spec = spec_or_default(config)
        run_placement_bench(
            spec,
            console,
            out,
            data_folder(data),
            photos=photos,
            steps=rates,
            codecs=codecs,
            profile_photos=profile_photos,
        )
    except TierwiseError as exc:
        raise fail(exc) from exc


@bench_app.command("planner")
def bench_planner(
    config: ConfigOpt = None,
    out: ResultsOpt = Path("bench/results"),
    rounds: Annotated[int, typer.Option(min=100, help="Decisions to time per policy.")] = 20000,
) -> None:
    """What one decision costs over every Lite0 plan, three-tier ones included (pure CPU)."""
    from tierwise.bench.planner import run_planner_bench

    try:
        run_planner_bench(spec_or_default(config), console, out, rounds)
    except TierwiseError as exc:
        raise fail(exc) from exc


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
        raise fail(exc) from exc


@bench_app.command("orchestrate")
def bench_orchestrate(
    data: Annotated[
        Path | None,
        typer.Option(
            help="TaskBench folder with train.jsonl and test.jsonl "
            "(default: <shared data>/taskbench)."
        ),
    ] = None,
    out: ResultsOpt = Path("bench/results"),
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds on train.")] = 5,
    llm_limit: Annotated[
        int,
        typer.Option(
            min=0,
            help="Test records the llm planner (SmolLM2, seconds a plan) plans, from the "
            "first; the learned planner is also scored on them. 0: no llm rows.",
        ),
    ] = 40,
) -> None:
    """Planners of plain-language requests on TaskBench: node, edge and argument F1, ms."""
    from tierwise.bench.orchestrate import run_orchestrate_bench

    folder = data or data_folder(None) / "taskbench"
    try:
        run_orchestrate_bench(folder, console, out, folds=folds, llm_limit=llm_limit)
    except TierwiseError as exc:
        raise fail(exc) from exc


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
    from tierwise.datasets.cifar10 import load_cifar10

    chosen = {t.strip() for t in tasks.split(",") if t.strip()}
    if not chosen <= COMPRESSION_TASKS:
        raise fail(InputError(f"--tasks: expected cifar10, lite or vqa, got {tasks!r}"))
    folder = data_folder(data)
    try:
        files = _codec_files(codecs, lite="lite" in chosen)
        dataset = load_cifar10(folder, cache_dir()) if chosen & {"cifar10", "lite"} else None
        backbone = _network("cifar10" in chosen, model, "CIFAR-10", "CIFAR-10")
        net = _network("vqa" in chosen, vqa, "VQA", "easy-vqa")
        run_compression_bench(
            dataset, backbone, files, console, out, limit, lite_limit, net,
            keep_others=chosen != COMPRESSION_TASKS,
        )  # fmt: skip
    except (TierwiseError, ValueError) as exc:
        raise fail_input(exc) from exc


def _codec_files(given: list[Path] | None, lite: bool) -> list[Path]:
    """The codecs to measure: those given, else every file in models/codecs; EfficientNet-Lite's
    only when its task is chosen."""
    from tierwise.codecs.codec_file import read_header

    files = given if given is not None else sorted(Path("models/codecs").glob("*.npz"))
    if not lite:
        files = [f for f in files if not read_header(f).model.startswith("efficientnet-")]
    return files


def _network(chosen: bool, path: Path, network: str, task: str) -> Path | None:
    """The network file of a chosen task; a missing one leaves its task out, with a warning."""
    if not chosen:
        return None
    if not path.is_file():
        console.print(f"[yellow]no {network} network at {path}: {task} is left out[/]")
        return None
    return path


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
    from tierwise.bench.optimize import add_variants, cifar_group, lite_group, measure, report
    from tierwise.cache import cache_dir
    from tierwise.datasets.cifar10 import load_cifar10

    try:
        cifar = load_cifar10(data_folder(data), cache_dir())
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
        raise fail(InputError("nothing to measure: no --lite and no CIFAR-10 network"))
    empty = measure(groups, threads, repeats, console)
    report(groups, empty, threads, out, console)


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
        data=data_folder(data).resolve(), out=out, clients=clients, rounds=rounds,
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
        raise fail(exc) from exc
    console.print(Path(out / "fl.md").read_text())
    for path in result["written"]:
        console.print(f"wrote {path}")
