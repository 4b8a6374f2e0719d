"""``tierwise planner``: train the learned planner of plain-language requests, and try one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tierwise.cli.common import console, fail
from tierwise.errors import InputError, TierwiseError

if TYPE_CHECKING:
    from tierwise.orchestrate.catalog import Catalog
    from tierwise.orchestrate.graph import TaskGraph
    from tierwise.orchestrate.learned import LearnedModel
    from tierwise.orchestrate.planner import Planned, Planner, PlanRequest

planner_app = typer.Typer(
    help="Train and try the learned planner (plain-language request → task graph).",
    no_args_is_help=True,
)

CatalogOpt = Annotated[
    Path | None,
    typer.Option(help="Tool catalog in TaskBench's tool_desc.json form; default: the embedded."),
]


@planner_app.command("train")
def planner_train(
    data: Annotated[
        Path | None,
        typer.Option(
            help="TaskBench-form JSON lines to learn from; default: the embedded example plans."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the planner (.npz).")] = Path(
        "models/planner.npz"
    ),
    catalog: CatalogOpt = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
) -> None:
    """Learn to plan from example requests; the design is picked by cross-validation on them."""
    from tierwise.orchestrate.examples import default_examples, load_examples
    from tierwise.orchestrate.selection import train_planner

    try:
        examples = load_examples(data) if data is not None else default_examples()
        tools = _catalog(catalog)
        source = str(data) if data is not None else "the embedded example plans"
        model = train_planner(examples, tools, k=folds, progress=console.log, source=source)
    except TierwiseError as exc:
        raise fail(exc) from exc
    model.save(out)
    _print_design(model)
    console.print(f"wrote {out} ({len(examples)} examples, {len(model.tools)} tools)")


@planner_app.command("plan")
def planner_plan(
    request: Annotated[str, typer.Argument(help="The request, in plain language.")],
    file: Annotated[
        list[str] | None,
        typer.Option(
            help="An attached file's name (repeatable); names in the request count as attached too."
        ),
    ] = None,
    planner: Annotated[
        Path | None,
        typer.Option(
            help="A planner from `tierwise planner train`; default: one trained "
            "now on the embedded example plans (a few seconds)."
        ),
    ] = None,
    catalog: CatalogOpt = None,
) -> None:
    """Plan one request and print its task graph."""
    from tierwise.orchestrate.catalog import file_names
    from tierwise.orchestrate.planner import PlanRequest
    from tierwise.orchestrate.planners import PlannerOptions, make_planner

    try:
        tools = _catalog(catalog)
        if planner is None:
            console.log("training the default planner on the embedded example plans")
        made = make_planner("learned", PlannerOptions(tools, path=planner))
        files = tuple(dict.fromkeys([*(file or []), *file_names(request)]))
        planned, ms = asyncio.run(_timed(made, PlanRequest(request, files)))
        tools.check(planned.graph, list(files))
    except TierwiseError as exc:
        raise fail(exc) from exc
    _print_graph(planned.graph, f"planned in {ms:.2f} ms by the learned planner")


async def _timed(planner: Planner, request: PlanRequest) -> tuple[Planned, float]:
    """The plan and its milliseconds, after one untimed plan (the first compiles the
    request patterns)."""
    await planner.plan(request)
    started = time.perf_counter()
    planned = await planner.plan(request)
    return planned, (time.perf_counter() - started) * 1e3


def _catalog(path: Path | None) -> Catalog:
    from tierwise.orchestrate.catalog import Catalog

    return Catalog.load(path) if path is not None else Catalog.default()


def _print_graph(graph: TaskGraph, title: str) -> None:
    table = Table(title=title)
    for column in ("node", "tool", "arguments"):
        table.add_column(column)
    for i, node in enumerate(graph.nodes):
        table.add_row(str(i), node.task, " | ".join(node.arguments))
    console.print(table)
    links = graph.resource_links()
    console.print("links: " + (", ".join(f"{s} → {t}" for s, t in links) if links else "none"))


def _print_design(model: LearnedModel) -> None:
    cv = model.info.get("cv", [])
    structure = [r for r in cv if r["stage"] == "structure"]
    if not structure:
        raise InputError("the trained planner has no cross-validation record")
    best = max(structure, key=lambda r: r["edge_f1"] or 0.0)
    d = model.design
    console.print(
        f"chosen by {model.info.get('folds')}-fold CV: {d.features} features (cue weight "
        f"{d.cue_weight:g}, l2 {d.l2:g}), threshold {d.threshold:g}, links "
        f"{'+'.join(d.links)}, decoder {d.decoder}; CV node F1 {best['node_f1']:.1f}, "
        f"edge F1 {best['edge_f1']:.1f}"
    )
