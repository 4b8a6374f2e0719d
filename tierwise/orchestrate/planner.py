"""The planner contract: a plain-language request in, a task graph out.

Planners plug in by name (:mod:`tierwise.orchestrate.planners` holds the one table). A
planner may run here in milliseconds (a learned one) or ask a language model (through
:data:`AskChat`, which the gateway provides so that the planning step is itself placed
like any chat request, under the request's policy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.graph import TaskGraph


@dataclass
class Planned:
    """A planner's graph, and what planning took (tokens, tiers, dollars when a model
    was asked; ``tries`` counts a retry after a broken graph)."""

    graph: TaskGraph
    planner: str
    tries: int = 1
    usage: dict[str, Any] = field(default_factory=dict)


#: Ask a chat model: messages and a JSON schema its answer must follow → the answer's
#: text and what it cost (the gateway's ``tierwise`` fields).
AskChat = Callable[[list[dict[str, str]], dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked, the names of the files they attached, and, from the gateway,
    how to ask a chat model for this request (placed under the request's policy, so a
    ``raw-stays-local`` request is planned on the device). Planners that ask no model
    ignore ``ask``."""

    text: str
    files: tuple[str, ...] = ()
    ask: AskChat | None = None


class Planner(ABC):
    name: str
    catalog: Catalog

    @abstractmethod
    async def plan(self, request: PlanRequest) -> Planned:
        """A graph for ``request`` over this planner's catalog; the caller checks it."""


@dataclass(frozen=True)
class Prediction:
    """One planner's answer to one example, as a benchmark scores it."""

    example_id: str
    graph: TaskGraph | None  # None: the planner gave no valid graph (refused, or broken twice)
    seconds: float  # planning latency, as measured where the planner ran
    tier: str  # where it ran: device, edge or cloud
    usd: float = 0.0  # what planning cost (modelled: price tables), 0 for a local planner
    tries: int = 1
