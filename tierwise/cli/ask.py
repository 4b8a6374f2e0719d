"""``tierwise ask``: a request in plain language, planned into a graph of models and run
across the tiers of the running cluster (its gateway's ``POST /v1/runs``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import StateOpt, console, fail, state_dir_or_default
from tierwise.errors import InputError, TierwiseError

FileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--file",
        "-f",
        help="A file the request names: PATH (named by its file name) or NAME=PATH "
        "(e.g. example.jpg=~/cat.png). Repeat for several.",
    ),
]


def ask(
    request: Annotated[str, typer.Argument(help="What you want, naming your files in it.")],
    file: FileOpt = None,
    policy: Annotated[
        str | None,
        typer.Option(help="A policy, as in X-Tierwise-Policy: 'privacy=raw-stays-local'."),
    ] = None,
    max_usd: Annotated[
        float | None, typer.Option(min=0.0, help="Most the whole run may cost (modelled $).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole answer as JSON.")
    ] = False,
    state_dir: StateOpt = None,
) -> None:
    """Plan a request into steps, run each on the tier that suits it, and answer."""
    try:
        body: dict[str, Any] = {"input": request, "files": _files(file or [])}
        if max_usd is not None:
            body["max_usd"] = max_usd
        run = _post(state_dir_or_default(state_dir), body, policy)
    except TierwiseError as exc:
        raise fail(exc) from exc
    if as_json:
        console.print_json(json.dumps(run))
        return
    _show(run)


def _files(given: list[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` → {name: base64 of the file's bytes}."""
    out = {}
    for item in given:
        name, sep, path = item.partition("=")
        source = Path(path if sep else name).expanduser()
        if not source.is_file():
            raise InputError(f"--file: {source} does not exist or is not a file")
        out[name if sep else source.name] = base64.b64encode(source.read_bytes()).decode()
    return out


def _post(state_dir: Path, body: dict[str, Any], policy: str | None) -> dict[str, Any]:
    import httpx

    from tierwise.errors import ClusterError, UpstreamError
    from tierwise.runtime.state import ClusterState, read_api_key

    state = ClusterState.load(state_dir)
    headers = {"Authorization": f"Bearer {read_api_key(state_dir)}"}
    if policy:
        headers["X-Tierwise-Policy"] = policy
    try:
        response = httpx.post(
            f"{state.gateway_url}/v1/runs", json=body, headers=headers, timeout=600
        )
    except httpx.HTTPError as exc:
        raise ClusterError(
            f"cannot reach the gateway at {state.gateway_url} ({exc}); is `tierwise up` running?"
        ) from exc
    data: dict[str, Any] = response.json()
    if response.status_code != 200:
        message = data.get("error", {}).get("message", response.text)
        raise UpstreamError(f"the gateway refused the run ({response.status_code}): {message}")
    return data


def _show(run: dict[str, Any]) -> None:
    planning = run["planning"]
    console.print(f"[bold]{run['answer']}[/]")
    table = Table(title=f"run {run['id']}: {run['status']}, {run['latency_ms']:.0f} ms")
    for column in ("#", "tool", "status", "output", "plan", "tiers", "ms", "$ (modelled)"):
        table.add_column(column)
    for step in run["steps"]:
        output = step.get("output", {})
        shown = output.get("text", f"{output.get('kind', '')} {output.get('bytes', '')} B")
        table.add_row(
            str(step["node"]),
            step["task"],
            step["status"],
            (shown or step.get("error", ""))[:60],
            step.get("plan") or "-",
            ",".join(step.get("tiers") or []) or "-",
            f"{step['latency_ms']:.0f}" if step.get("latency_ms") is not None else "-",
            f"{step['usd_modelled']:.2e}" if step.get("usd_modelled") is not None else "-",
        )
    console.print(table)
    console.print(
        f"planned by {planning['planner']} on the {planning['tier']} in "
        f"{planning['latency_ms']:.1f} ms; answered by {run['answered_by']}; "
        f"${run['usd_modelled']:.2e} in all (modelled). "
        f"`tierwise explain {run['id']}` shows the run again."
    )
