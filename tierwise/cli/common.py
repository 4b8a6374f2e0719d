"""What every command group shares: the consoles, option types, error exits, spec and
state lookup, and progress reporting for long jobs."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tierwise.errors import ConfigError, InputError, TierwiseError

if TYPE_CHECKING:
    from tierwise.config import ClusterSpec
    from tierwise.optimize.train_device import Precision

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
DataOpt = Annotated[
    Path | None,
    typer.Option(help="Shared data folder (default: $TIERWISE_DATA or ../shared/data)."),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="fp32, or bf16: mixed-precision forward passes, 2-5x faster on CPUs with AMX "
        "or AVX512-BF16 (slower on others)."
    ),
]


def state_dir_or_default(option: Path | None) -> Path:
    return option or Path(os.environ.get("TIERWISE_STATE_DIR", "~/.tierwise/run")).expanduser()


def spec_or_default(config: Path | None) -> ClusterSpec:
    from tierwise.config import default_spec, load_spec

    return load_spec(config) if config else default_spec()


def data_folder(data: Path | None) -> Path:
    return data or Path(os.environ.get("TIERWISE_DATA") or "../shared/data")


def parse_precision(value: str) -> Precision:
    if value not in ("fp32", "bf16"):
        raise fail(InputError(f"--precision: expected fp32 or bf16, got {value!r}"))
    return value  # type: ignore[return-value]


def print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}")


def fail(exc: TierwiseError) -> typer.Exit:
    """Print the error and return the exit to raise: 2 for a bad spec, 1 otherwise."""
    print_error(exc.message)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def fail_input(exc: TierwiseError | ValueError) -> typer.Exit:
    """``fail``, where a ValueError from a library is taken as bad input."""
    return fail(exc if isinstance(exc, TierwiseError) else InputError(str(exc)))


@contextlib.contextmanager
def phase_progress() -> Iterator[Callable[[str, int, int], None]]:
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
