"""``tierwise config``: check a cluster spec, or print the embedded default."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tierwise.cli.common import console, fail
from tierwise.errors import TierwiseError

config_app = typer.Typer(no_args_is_help=True, help="Check and print cluster specs.")


@config_app.command("validate")
def config_validate(path: Path) -> None:
    """Check a cluster spec and print a summary, or the problems found."""
    from tierwise.config import load_spec
    from tierwise.gateway.runs.planner_slot import planner_maker
    from tierwise.orchestrate.catalog import Catalog

    try:
        spec = load_spec(path)
        if spec.gateway is not None:  # what the gateway would refuse at start: say it now
            planner_maker(spec.gateway.runs, Catalog.default())
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(
        f"{path}: ok — {len(spec.nodes)} nodes, {len(spec.links)} links, {len(spec.models)} models"
    )


@config_app.command("default")
def config_default() -> None:
    """Print the embedded default spec (a starting point for your own)."""
    from tierwise.config import default_spec_text

    sys.stdout.write(default_spec_text())
