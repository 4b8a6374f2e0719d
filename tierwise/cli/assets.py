"""``tierwise assets``: make the fitted codec and int8 variant the demo and bench use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from tierwise.cli.common import console, fail, phase_progress
from tierwise.errors import TierwiseError

if TYPE_CHECKING:
    from tierwise.optimize.assets import Asset


def assets(
    out_dir: Annotated[
        Path, typer.Option(help="Folder holding codecs/ and variants/ (as cluster specs read).")
    ] = Path("models"),
    force: Annotated[bool, typer.Option(help="Rebuild even what is there and reads back.")] = False,
) -> None:
    """Make what is missing of EfficientNet-Lite0's fitted split-6 codec (seconds) and its
    static int8 variant (about a minute), from photos that ship with installed packages."""
    from tierwise.optimize.assets import build_assets

    try:
        with phase_progress() as step:
            made = build_assets(out_dir, force, step)
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(_table(made))
    for asset in made:
        console.print(f"{asset.name}: {asset.path}; measured on {asset.measured_on or '?'}")
        if asset.agreement is not None and asset.agreement < 0.9:
            # the planner reads this number: a policy's min_quality above it skips the asset
            console.print(
                f"[yellow]note: {asset.name} disagrees with the unoptimized model on "
                f"{1 - asset.agreement:.0%} of those photos; plans with it carry that quality[/]"
            )


def _table(made: list[Asset]) -> Table:
    table = Table(title="assets", box=box.SIMPLE_HEAD)
    table.add_column("made", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("size", "time", "agreement", "card"):
        table.add_column(column, justify="right", no_wrap=True)
    for a in made:
        agreement = "?" if a.agreement is None else f"{a.agreement:.1%}"
        seconds = f"{a.seconds:.1f} s" if a.status == "built" else "-"
        table.add_row(a.name, a.status, f"{a.bytes / 1e6:.2f} MB", seconds, agreement, a.card)
    return table
