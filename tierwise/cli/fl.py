"""``tierwise fl``: federated learning on Flower (``run`` simulates, ``up`` deploys)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tierwise.cli.common import console, data_folder, print_error
from tierwise.errors import TierwiseError
from tierwise.units import format_bytes, format_duration

fl_app = typer.Typer(
    help="Federated learning on Flower with compressed updates over slow links.",
    no_args_is_help=True,
)
Opt = typer.Option
Clients = Annotated[int, Opt(help="Number of clients (SuperNodes).")]
Rounds = Annotated[int, Opt(help="Federated rounds.")]
LocalEpochs = Annotated[int, Opt(help="Passes over its own data each client makes per round.")]
Partition = Annotated[str, Opt(help="iid, or dirichlet:ALPHA for label skew.")]
Uplink = Annotated[str, Opt(help="Client uplink rate, e.g. 250KB/s (EMULATED).")]
Downlink = Annotated[str, Opt(help="Client downlink rate, e.g. 500KB/s (EMULATED).")]
SlowClients = Annotated[int, Opt(help="How many clients get a slower uplink (stragglers).")]
SlowFactor = Annotated[float, Opt(help="How many times slower the stragglers' uplink is.")]
Compress = Annotated[str, Opt(help="none, topk:F, q8, q4, topk:F+q8 or topk:F+q4.")]
StrategyOpt = Annotated[str, Opt(help="fedavg or fedprox (Flower's strategies).")]
ProximalMu = Annotated[float, Opt(help="FedProx's proximal weight mu.")]
Dp = Annotated[bool, Opt(help="Central DP with client-side clipping (Flower's DP wrapper).")]
DpNoise = Annotated[float, Opt(help="DP noise multiplier.")]
DpClip = Annotated[float, Opt(help="DP clipping norm of each update.")]
SecAgg = Annotated[
    bool, Opt(help="Flower's SecAgg+: the server sees only the sum (needs --compress none).")
]
Model = Annotated[str, Opt(help="head (linear head on frozen Lite0 features) or cnn.")]
ImageSize = Annotated[int, Opt(help="Pixels the head model's backbone sees.")]
Lr = Annotated[float, Opt(help="Client SGD learning rate.")]
Batch = Annotated[int, Opt(help="Client SGD batch size.")]
LrDecay = Annotated[float, Opt(help="Learning rate multiplier per round (1 = constant).")]
Fraction = Annotated[float, Opt(help="Share of clients sampled each round.")]
MinClients = Annotated[int, Opt(help="Fewest usable updates that still move the model.")]
RoundTimeout = Annotated[float, Opt(help="Seconds a round waits for slow or lost clients.")]
Seed = Annotated[int, Opt(help="Seed for partitioning, sampling and rounding.")]
FlDataOpt = Annotated[
    Path | None,
    Opt(help="CIFAR-10 shared folder or a train/ test/ class-folder tree "
        "(default: $TIERWISE_DATA or ../shared/data)."),
]  # fmt: skip
ReportOpt = Annotated[Path | None, Opt(help="Where to write the JSON report (and weights).")]


def settings_from_options(**options: Any) -> Any:
    """FLSettings from CLI values, or a clear error naming the bad option."""
    from pydantic import ValidationError

    from tierwise.federated.fl_config import FLSettings

    try:
        return FLSettings(**options)
    except ValidationError as exc:
        problems = "; ".join(_option_error(e) for e in exc.errors())
        print_error(problems)
        raise typer.Exit(2) from None


def _option_error(error: Any) -> str:
    """``--option: message``; a rule across options names them in its message instead."""
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message
    return f"--{'-'.join(str(p) for p in error['loc']).replace('_', '-')}: {message}"


def _default_report() -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "fl" / f"{stamp}.json"


@fl_app.command("run")
def fl_run(
    clients: Clients = 10,
    rounds: Rounds = 20,
    local_epochs: LocalEpochs = 1,
    partition: Partition = "iid",
    uplink: Uplink = "250KB/s",
    downlink: Downlink = "500KB/s",
    slow_clients: SlowClients = 0,
    slow_factor: SlowFactor = 5.0,
    compress: Compress = "none",
    strategy: StrategyOpt = "fedavg",
    proximal_mu: ProximalMu = 0.01,
    dp: Dp = False,
    dp_noise_multiplier: DpNoise = 0.1,
    dp_clipping_norm: DpClip = 1.0,
    secagg: SecAgg = False,
    model: Model = "head",
    image_size: ImageSize = 128,
    lr: Lr = 0.003,
    lr_decay: LrDecay = 0.95,
    batch: Batch = 32,
    fraction: Fraction = 1.0,
    min_clients: MinClients = 2,
    round_timeout: RoundTimeout = 600.0,
    seed: Seed = 0,
    data: FlDataOpt = None,
    report: ReportOpt = None,
    inject_fault: Annotated[
        str,
        Opt(hidden=True, help="For tests: KIND@PARTITION:ROUND,... (hang, crash, garbage, shape)."),
    ] = "",
) -> None:
    """Train across simulated clients on Flower's simulation engine; print each round."""
    _execute(dict(locals()), deploy=False)


# `fl up` takes exactly the options of `fl run`: Typer reads the signature through
# functools.wraps, so the option list is written once.
@fl_app.command("up")
@functools.wraps(fl_run)
def fl_up(**options: Any) -> None:
    _execute(options, deploy=True)


fl_up.__doc__ = (
    "Deploy for real on loopback: a Flower SuperLink and one SuperNode per client as "
    "processes, each client's traffic through a tierwise link-shaping proxy; run, then stop."
)


def _execute(options: dict[str, Any], deploy: bool) -> None:
    data, report, fault = options.pop("data"), options.pop("report"), options.pop("inject_fault")
    folder = data_folder(data)
    out = report or _default_report()
    settings = settings_from_options(
        **options, data=str(folder.resolve()), report=str(out.resolve()), fault=fault
    )
    _prepare_inputs(settings)
    try:
        if deploy:
            from tierwise.federated.deployment import run_deployed

            workdir = out.resolve().with_suffix("")
            console.print(f"deployment folder {workdir} (logs, Flower home, app)")
            result = run_deployed(settings, workdir, lambda line: console.print(line))
        else:
            from tierwise.federated.simulation import run_simulated

            with RoundProgress(settings.rounds) as on_round:
                result = run_simulated(settings, on_round)
    except TierwiseError as exc:
        print_error(exc.message)
        raise typer.Exit(1) from None
    print_summary(result)
    console.print(f"wrote {out} and {result.get('weights_file', '')}")


def _prepare_inputs(settings: Any) -> None:
    """Load the data (and build the backbone-feature cache) with a progress bar."""
    from tierwise.federated.fl_data import load_images, model_inputs

    try:
        pixels = 32 if settings.model == "cnn" else settings.image_size
        images = load_images(Path(settings.data), pixels)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("backbone features (cached after the first run)", total=1)
            model_inputs(
                images,
                settings.model,
                settings.image_size,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
    except TierwiseError as exc:
        print_error(exc.message)
        raise typer.Exit(1) from None


class RoundProgress:
    """A progress bar over rounds, advanced by the server's per-round callback."""

    def __init__(self, rounds: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task("rounds", total=rounds, note="starting clients")

    def __enter__(self) -> Any:
        self._progress.start()

        def on_round(record: Any) -> None:
            note = (
                f"round {record.round}: accuracy {record.accuracy:.2%}, "
                f"up {format_bytes(record.up_bytes)}, "
                f"simulated {format_duration(record.simulated_s)}"
            )
            if record.problems:
                note += f" [yellow]({len(record.problems)} problems)[/]"
            self._progress.update(self._task, completed=record.round, note=note)

        return on_round

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def print_summary(result: dict[str, Any]) -> None:
    table = Table(title="federated run")
    for column in ("round", "accuracy", "up", "down", "simulated", "compute", "problems"):
        table.add_column(column)
    for row in result["rounds"]:
        accuracy = row["accuracy"]
        table.add_row(
            str(row["round"]),
            f"{accuracy:.2%}" if accuracy is not None else "-",
            format_bytes(row["up_bytes"]),
            format_bytes(row["down_bytes"]),
            format_duration(row["simulated_s"]),
            format_duration(row["compute_s"]),
            "; ".join(row["problems"])[:80],
        )
    console.print(table)
    console.print(
        f"final accuracy {result['final_accuracy']:.2%}; uplink {format_bytes(result['up_bytes'])}"
        f", simulated {format_duration(result['simulated_s'])} "
        f"(wall {format_duration(result['wall_s'])})"
    )
