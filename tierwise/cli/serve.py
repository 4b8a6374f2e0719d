"""The serving processes that ``tierwise up`` starts: ``node serve``, ``gateway serve`` and
the hidden ``link serve``. Each runs one process of a resolved cluster until stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tierwise.cli.common import fail
from tierwise.errors import TierwiseError

node_app = typer.Typer(no_args_is_help=True, help="Run a single node.")
gateway_app = typer.Typer(no_args_is_help=True, help="Run the gateway.")

UpStateOpt = Annotated[
    Path, typer.Option("--state-dir", help="State directory written by `tierwise up`.")
]


@node_app.command("serve")
def node_serve(
    state_dir: UpStateOpt,
    node: Annotated[str, typer.Option("--node", help="Which node of the spec to serve.")],
) -> None:
    """Serve one node of a resolved cluster (the token comes from the spec's auth.token_env)."""
    from tierwise.runtime.serve import serve_node

    try:
        serve_node(state_dir, node)
    except TierwiseError as exc:
        raise fail(exc) from exc


@gateway_app.command("serve")
def gateway_serve(state_dir: UpStateOpt) -> None:
    """Serve the gateway of a resolved cluster (started by `tierwise up`)."""
    from tierwise.gateway.serve import serve_gateway

    try:
        serve_gateway(state_dir)
    except TierwiseError as exc:
        raise fail(exc) from exc


def link_serve(
    state_dir: Annotated[Path, typer.Option("--state-dir")],
    link: Annotated[str, typer.Option("--link")],
) -> None:
    """Run one link proxy (started by `tierwise up`)."""
    from tierwise.runtime.serve import serve_link

    try:
        serve_link(state_dir, link)
    except TierwiseError as exc:
        raise fail(exc) from exc
