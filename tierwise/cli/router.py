"""``tierwise router``: train the learned LLM router, and ask it about one prompt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tierwise.cli.common import console, fail, fail_input
from tierwise.errors import InputError, TierwiseError

if TYPE_CHECKING:
    from tierwise.config import Policy

router_app = typer.Typer(help="Train and try the learned LLM router.", no_args_is_help=True)


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
        raise fail_input(exc) from exc
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
    from tierwise.routing.router import Router

    try:
        policy = _policy(min_quality, max_usd)
        router = Router.load(router_path)
    except TierwiseError as exc:
        raise fail(exc) from exc
    decision = router.decide(prompt, policy)
    table = Table(title=f"route: {decision.model} ({decision.decision_ms:.2f} ms)")
    for column in ("model", "P(correct)", "$/query"):
        table.add_column(column)
    for m in router.models:
        mark = "[bold]" if m == decision.model else ""
        table.add_row(
            f"{mark}{m}", f"{decision.p_correct[m]:.3f}", f"{decision.expected_usd[m]:.6f}"
        )
    console.print(table)


def _policy(min_quality: float | None, max_usd: float | None) -> Policy:
    """The request policy these options make, or an InputError naming the option."""
    from pydantic import ValidationError

    from tierwise.config import Policy

    try:
        return Policy(min_quality=min_quality, max_usd=max_usd)
    except ValidationError as exc:
        problem = exc.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-")
        raise InputError(f"{option}: {problem['msg']}, got {problem['input']!r}") from exc
