"""``tierwise profile``: measure a running cluster for the planner's cost model."""

from __future__ import annotations

from typing import Annotated

import typer

from tierwise.cli.common import StateOpt, console, fail, state_dir_or_default
from tierwise.errors import TierwiseError


def profile(
    state_dir: StateOpt = None,
    photos: Annotated[int, typer.Option(help="Real photos for codec accuracy.")] = 24,
) -> None:
    """Measure every node's stages and chat speed, and every codec's size and accuracy."""
    from tierwise.gateway.profiler import profile_cluster
    from tierwise.ledger.store import Ledger
    from tierwise.placement.profiles import Profiles
    from tierwise.runtime.state import ClusterState, read_token

    try:
        directory = state_dir_or_default(state_dir)
        state = ClusterState.load(directory)
        store = Ledger(state.ledger_url)
        profiles = Profiles()
        with console.status("profiling..."):
            profile_cluster(state, read_token(directory), profiles, console.log, photos=photos)
        store.save_profiles(profiles.rows())
        store.close()
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(
        f"stored {len(profiles)} measurements in {state.ledger_url}; "
        "the gateway picks them up when it next starts"
    )
