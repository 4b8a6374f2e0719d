"""``tierwise profile``: measure a running cluster for the planner's cost model."""

from __future__ import annotations

from typing import Annotated

import typer

from tierwise.cli.common import DataOpt, StateOpt, console, data_folder, fail, state_dir_or_default
from tierwise.errors import TierwiseError


def profile(
    state_dir: StateOpt = None,
    photos: Annotated[int, typer.Option(help="Real photos for codec sizes and times.")] = 24,
    data: DataOpt = None,
    quality_photos: Annotated[
        int | None,
        typer.Option(
            min=1, help="Labelled photos for each plan's accuracy (default: all of them)."
        ),
    ] = None,
) -> None:
    """Measure every node's stages and chat speed, every codec's size and time, and each
    vision plan's top-1 accuracy on the labelled photos in the shared data folder."""
    from tierwise.gateway.profiler import QualityData, profile_cluster
    from tierwise.ledger.store import Ledger
    from tierwise.placement.profiles import Profiles
    from tierwise.runtime.state import ClusterState, read_token

    try:
        directory = state_dir_or_default(state_dir)
        state = ClusterState.load(directory)
        store = Ledger(state.ledger_url)
        profiles = Profiles()
        with console.status("profiling..."):
            quality = QualityData(data_folder(data), quality_photos)
            token = read_token(directory)
            profile_cluster(state, token, profiles, console.log, photos=photos, quality=quality)
        store.save_profiles(profiles.rows())
        store.close()
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(
        f"stored {len(profiles)} measurements in {state.ledger_url}; "
        "the gateway picks them up when it next starts"
    )
