"""The ``tierwise`` command line: one module per command group, and this file their table of
contents. Only here is anything attached to ``app``, in the order ``tierwise --help``
lists it; a group's module holds its own Typer and nothing else's.

Each command reads its inputs and calls one package, imported inside the command so that
``tierwise --help`` loads none of them.
"""

from __future__ import annotations

import typer

from tierwise.cli import (
    ask,
    assets,
    bench,
    cascade,
    cluster,
    compress,
    config,
    fl,
    ledger,
    link,
    optimize,
    planner,
    profile,
    router,
    serve,
    train,
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="tierwise: run each AI request on the device, an edge server or the cloud.",
)

for command in (
    cluster.up,
    cluster.status,
    cluster.demo,
    ask.ask,
    ledger.report,
    ledger.explain,
    profile.profile,
    optimize.optimize,
    assets.assets,
):
    app.command()(command)

# `link serve` lives with the other serving processes `tierwise up` starts.
link.link_app.command("serve", hidden=True)(serve.link_serve)

for name, group in (
    ("link", link.link_app),
    ("node", serve.node_app),
    ("config", config.config_app),
    ("bench", bench.bench_app),
    ("gateway", serve.gateway_app),
    ("router", router.router_app),
    ("planner", planner.planner_app),
    ("cascade", cascade.cascade_app),
    ("train", train.train_app),
    ("compress", compress.compress_app),
    ("fl", fl.fl_app),
    ("ledger", ledger.ledger_app),
):
    app.add_typer(group, name=name)

__all__ = ["app"]
