"""``tierwise up``, ``status`` and ``demo``: run the local cluster and see its endpoints."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tierwise.cli.common import (
    ConfigOpt,
    StateOpt,
    console,
    fail,
    spec_or_default,
    state_dir_or_default,
)
from tierwise.errors import TierwiseError
from tierwise.units import format_rate

if TYPE_CHECKING:
    from tierwise.runtime.launcher import LocalCluster
    from tierwise.runtime.state import ClusterState

# A row of the endpoints table, with the URL its health is checked at.
Row = tuple[tuple[str, ...], str]


def up(
    config: ConfigOpt = None,
    state_dir: StateOpt = None,
    restart: Annotated[
        bool,
        typer.Option(
            help="Restart a node, link proxy or gateway that exits (backoff 0.5 s doubling "
            "to 10 s; give up after 5 exits while starting within 60 s)."
        ),
    ] = True,
) -> None:
    """Start every node and link of the spec as processes; Ctrl-C stops them all."""
    from tierwise.runtime.launcher import LocalCluster
    from tierwise.runtime.supervise import RestartPolicy

    try:
        cluster = LocalCluster(
            spec_or_default(config),
            state_dir_or_default(state_dir),
            restart=RestartPolicy() if restart else None,
            wait_for_profiles=False,
        )
        started = time.perf_counter()
        with console.status("starting nodes and links..."):
            state = cluster.start(progress=lambda msg: console.log(msg))
    except TierwiseError as exc:
        raise fail(exc) from exc
    try:
        # Before anything is announced: a script that reads "Ctrl-C to stop" and signals
        # at once must not beat the handler (with SIGINT inherited as ignored, it would
        # be dropped and the cluster would run on).
        _stop_on_signals()
        console.log(f"healthy after {time.perf_counter() - started:.1f} s")
        console.print(_endpoints_table(state))
        console.print(f"state and token: {state.state_dir}   (Ctrl-C to stop)")
        _report_exits_forever(cluster)
    except KeyboardInterrupt:
        console.print("stopping...")
    except TierwiseError as exc:
        # The supervisor gave up on a child that keeps exiting.
        cluster.stop()
        console.print("all processes stopped")
        raise fail(exc) from exc
    finally:
        cluster.stop()
    console.print("all processes stopped")


def _stop_on_signals() -> None:
    """Make Ctrl-C and SIGTERM both end the watch loop, so the finally block stops the
    children. Started in the background from a script, a process inherits SIGINT as
    ignored, and Python then never raises KeyboardInterrupt; so the handler is set here."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _report_exits_forever(cluster: LocalCluster) -> None:
    """Print each child that exits, with its log's tail, until interrupted or until the
    supervisor gives up (its ClusterError propagates). Restarts are logged as they
    happen, through start()'s progress callback."""
    while True:
        for dead in cluster.poll():
            what = f"{dead.kind} {dead.name} exited with code {dead.returncode}"
            console.print(f"[bold red]{what}[/bold red]; the end of its log:")
            console.print(dead.log_tail, markup=False, highlight=False)
        time.sleep(0.2)


def status(state_dir: StateOpt = None) -> None:
    """Show the endpoints of the running cluster and whether each answers."""
    from tierwise.runtime.state import ClusterState

    try:
        state = ClusterState.load(state_dir_or_default(state_dir))
    except TierwiseError as exc:
        raise fail(exc) from exc
    console.print(_endpoints_table(state, check=True))


def demo(config: ConfigOpt = None) -> None:
    """Start the local cluster, send a chat prompt and a photo to each tier, print a table."""
    from tierwise.runtime.demo import run_demo

    try:
        run_demo(spec_or_default(config), console)
    except TierwiseError as exc:
        raise fail(exc) from exc


def _endpoints_table(state: ClusterState, check: bool = False) -> Table:
    table = Table(title=f"cluster {state.spec.name}")
    for col in ("kind", "name", "tier", "endpoint", "from device", "notes"):
        table.add_column(col)
    if check:
        table.add_column("health")
    for row, url in [*_node_rows(state), *_link_rows(state), *_gateway_rows(state)]:
        table.add_row(*row, *(_health(url) if check else []))
    return table


def _health(url: str) -> list[str]:
    import httpx

    try:
        return ["ok" if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 else "bad"]
    except httpx.HTTPError:
        return ["[red]down[/red]"]


def _node_rows(state: ClusterState) -> list[Row]:
    rows: list[Row] = []
    for node in state.spec.nodes:
        url = state.node_url(node.name)
        note = f"EMULATED speed ×{node.speed_factor}" if node.speed_factor < 1 else ""
        from_device = state.url_from("device", node.name)
        rows.append((("node", node.name, node.tier, url, from_device, note), url))
    return rows


def _link_rows(state: ClusterState) -> list[Row]:
    rows: list[Row] = []
    for link in state.spec.links:
        url = state.links[link.name].control_url
        e = link.emulate
        note = f"EMULATED {format_rate(e.bandwidth)}, RTT {e.rtt * 1e3:.0f} ms" if e else ""
        rows.append((("link", link.name, f"{link.a}↔{link.b}", url, "", note), url))
    return rows


def _gateway_rows(state: ClusterState) -> list[Row]:
    if state.spec.gateway is None:
        return []
    url = state.gateway_url
    return [(("gateway", "gateway", state.spec.gateway.tier, url, url, "API keys"), url)]
