"""Made-up live states for planner tests: every link and node up, nothing queued."""

from __future__ import annotations

import numpy as np

from tierwise.placement.cost import LiveState, PlanTable


def all_up(table: PlanTable, bandwidth: float, rtt: float = 0.02) -> LiveState:
    """Every link at ``bandwidth`` bytes/s and ``rtt`` seconds."""
    links, nodes = len(table.links), len(table.nodes)
    return LiveState(
        np.full(links, bandwidth),
        np.full(links, rtt),
        np.ones(links, bool),
        np.zeros(nodes),
        np.ones(nodes, bool),
    )
