"""``tierwise link``: show and change the emulated links of a running cluster, live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tierwise.cli.common import StateOpt, console, fail, state_dir_or_default
from tierwise.errors import TierwiseError
from tierwise.units import format_rate

if TYPE_CHECKING:
    from tierwise.net.link_client import LinkClient

link_app = typer.Typer(
    no_args_is_help=True, help="Show and change the EMULATED links of a running cluster."
)


@link_app.command("set")
def link_set(
    name: Annotated[str, typer.Argument(help="Link name, e.g. device-edge.")],
    bandwidth: Annotated[str | None, typer.Argument(help="Rate both ways, e.g. 300KB/s.")] = None,
    downlink: Annotated[str | None, typer.Option(help="Rate b→a if different, e.g. 1MB/s.")] = None,
    rtt: Annotated[str | None, typer.Option(help="Round-trip time, e.g. 30ms.")] = None,
    loss: Annotated[float | None, typer.Option(help="Segment loss ratio, 0 <= loss < 1.")] = None,
    state_dir: StateOpt = None,
) -> None:
    """Change a link's emulated bandwidth, RTT or loss, live."""
    _on_link(name, state_dir, lambda client: client.set(bandwidth, downlink, rtt, loss))


@link_app.command("down")
def link_down(name: str, state_dir: StateOpt = None) -> None:
    """Take a link offline: open connections are cut and new ones refused."""
    _on_link(name, state_dir, lambda client: client.down())


@link_app.command("up")
def link_up(name: str, state_dir: StateOpt = None) -> None:
    """Bring a link back online."""
    _on_link(name, state_dir, lambda client: client.up())


@link_app.command("show")
def link_show(name: str, state_dir: StateOpt = None) -> None:
    """Print a link's settings and byte counters."""
    _on_link(name, state_dir, lambda client: client.show())


def _on_link(
    name: str, state_dir: Path | None, action: Callable[[LinkClient], dict[str, Any]]
) -> None:
    """Find the running cluster's link ``name``, apply ``action`` to it, print the result."""
    from tierwise.net.link_client import LinkClient
    from tierwise.runtime.state import ClusterState, read_token

    try:
        directory = state_dir_or_default(state_dir)
        state = ClusterState.load(directory)
        url = state.link_endpoints(name).control_url
        with LinkClient(url, read_token(directory)) as client:
            status = action(client)
    except TierwiseError as exc:
        raise fail(exc) from exc
    online = "online" if status["online"] else "[red]DOWN[/red]"
    console.print(
        f"link {status['name']} (EMULATED): {online}, up {format_rate(status['bandwidth'])}, "
        f"down {format_rate(status['downlink'])}, RTT {status['rtt'] * 1e3:.0f} ms, "
        f"loss {status['loss']:.1%}; moved {status['bytes_up']} B up, "
        f"{status['bytes_down']} B down"
    )
