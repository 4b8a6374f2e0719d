"""``tierwise cascade calibrate``: pick the confidence threshold of the live cascade, where
the local model answers first and escalates when unsure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tierwise.cli.common import ConfigOpt, console, fail, spec_or_default
from tierwise.errors import InputError, TierwiseError

if TYPE_CHECKING:
    from tierwise.config import LlamaCppModel
    from tierwise.routing.calibrate import Calibration, Labelled, Trial

cascade_app = typer.Typer(
    help="The live cascade: local model first, escalate when unsure.", no_args_is_help=True
)


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

    from tierwise.routing.calibrate import calibrate, labelled_prompts

    if not 0 < target <= 1:
        raise fail(InputError("--target must be in (0, 1]", param="target"))
    try:
        chosen = _local_model(config, model)
        items = labelled_prompts(data)[:limit]
    except TierwiseError as exc:
        raise fail(exc) from exc
    trials = _answer_each(model, chosen, items, max_tokens)
    result = calibrate(trials, target)
    title = f"cascade calibration: {model} on {data.name} ({len(trials)} prompts)"
    _print_calibration(title, result, target)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.__dict__, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")


def _local_model(config: Path | None, model: str) -> LlamaCppModel:
    from tierwise.config import LlamaCppModel

    chosen = spec_or_default(config).models.get(model)
    if not isinstance(chosen, LlamaCppModel):
        raise InputError(f"--model {model!r} is not a llama-cpp model of the spec")
    return chosen


def _answer_each(
    model: str, chosen: LlamaCppModel, items: list[Labelled], max_tokens: int
) -> list[Trial]:
    """Greedy answers from the local model with their mean log-probability, one a prompt."""
    from rich.progress import Progress

    from tierwise.models.base import ChatMessage, ChatParams
    from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf
    from tierwise.routing.calibrate import run_trials

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
    return trials


def _print_calibration(title: str, result: Calibration, target: float) -> None:
    table = Table(title=title)
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
