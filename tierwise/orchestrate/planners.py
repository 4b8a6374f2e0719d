"""Every planner by name: the one table the gateway, the CLI and the bench make them from.

A factory takes :class:`PlannerOptions` and returns a ready :class:`Planner`. Adding a
planner: write its module under ``tierwise/orchestrate/`` and add one line to
:data:`PLANNERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tierwise.errors import InputError
from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import Example, default_examples
from tierwise.orchestrate.planner import AskChat, Planner


@dataclass(frozen=True)
class PlannerOptions:
    """What a planner may need; each factory reads its own part."""

    catalog: Catalog
    path: Path | None = None  # a trained planner (`tierwise planner train`)
    examples: Sequence[Example] | None = None  # what to learn from; default: the embedded
    ask: AskChat | None = None  # a chat model to ask (planners that prompt one)


PlannerFactory = Callable[[PlannerOptions], Planner]


def _learned(options: PlannerOptions) -> Planner:
    from tierwise.orchestrate.learned import LearnedPlanner
    from tierwise.orchestrate.selection import train_planner

    if options.path is not None:
        return LearnedPlanner.load(options.path, options.catalog)
    source = "the given examples" if options.examples else "the embedded example plans"
    examples = options.examples or default_examples()
    model = train_planner(examples, options.catalog, source=source)
    return LearnedPlanner(model, options.catalog)


def _nearest(options: PlannerOptions) -> Planner:
    from tierwise.orchestrate.nearest import NearestPlanner

    return NearestPlanner(options.examples or default_examples(), options.catalog)


def _llm(options: PlannerOptions) -> Planner:
    from tierwise.orchestrate.llm import LLMPlanner

    # No ask here is fine for the gateway: it gives each request one bound to its policy.
    return LLMPlanner(options.catalog, options.examples or default_examples(), options.ask)


PLANNERS: dict[str, PlannerFactory] = {
    "learned": _learned,
    "nearest": _nearest,
    "llm": _llm,
}


def make_planner(name: str, options: PlannerOptions) -> Planner:
    factory = PLANNERS.get(name)
    if factory is None:
        raise InputError(f"unknown planner {name!r}; planners: {sorted(PLANNERS)}", param="planner")
    return factory(options)
