"""``tierwise report``, ``explain`` and ``ledger check``: read the ledger of what requests
ran and cost, and prove that it agrees with the budgets."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tierwise.cli.common import StateOpt, console, fail, print_error, state_dir_or_default
from tierwise.errors import TierwiseError

if TYPE_CHECKING:
    from tierwise.ledger.report import Report
    from tierwise.ledger.store import Ledger, RequestRecord, RunRecord

ledger_app = typer.Typer(
    no_args_is_help=True, help="The ledger itself: check that budgets and records agree."
)

LedgerOpt = Annotated[
    str | None,
    typer.Option("--ledger", help="SQLAlchemy URL; default: the running cluster's ledger."),
]


def report(
    ledger: LedgerOpt = None,
    state_dir: StateOpt = None,
    days: Annotated[float | None, typer.Option(help="Only the last N days.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Spend, tokens, bytes, joules and latency by tier, model and day, against all-cloud."""
    import json

    from tierwise.ledger.report import build_report, report_json

    try:
        store = _ledger(ledger, state_dir)
    except TierwiseError as exc:
        raise fail(exc) from exc
    since = time.time() - days * 86400 if days else 0.0
    result = build_report(store.rows(since))
    store.close()
    if as_json:
        sys.stdout.write(json.dumps(report_json(result), indent=2) + "\n")
        return
    _print_report(result)


@ledger_app.command("check")
def check(ledger: LedgerOpt = None, state_dir: StateOpt = None) -> None:
    """Prove every budget's usage is its ledger charges plus its live holds, per scope
    (global and each key) and period. Exit 0 when it holds, 1 naming each mismatch."""
    from tierwise.ledger.check import balances

    try:
        store = _ledger(ledger, state_dir)
        rows = balances(store)
        store.close()
    except TierwiseError as exc:
        raise fail(exc) from exc
    table = Table(title="budgets against the ledger (USD)")
    for col in ("scope", "period", "spent", "records charge", "reserved", "live holds", "ok"):
        table.add_column(col, justify="left" if col in ("scope", "period") else "right")
    for b in rows:
        table.add_row(
            b.scope,
            b.period,
            f"{b.spent_nusd / 1e9:.9f}",
            f"{b.charged_nusd / 1e9:.9f}",
            f"{b.reserved_nusd / 1e9:.9f}",
            f"{b.held_nusd / 1e9:.9f} ({b.holds})",
            "yes" if b.ok else "NO",
        )
    console.print(table)
    wrong = [b.mismatch() for b in rows if not b.ok]
    for line in wrong:
        print_error(f"mismatch: {line}")
    if wrong:
        raise typer.Exit(1)
    console.print(
        f"ledger check: {len(rows)} budget rows balance (spent = charged, reserved = held)"
    )


def explain(
    request_id: Annotated[
        str, typer.Argument(help="A request's id (X-Tierwise-Request-Id) or a run's id.")
    ],
    ledger: LedgerOpt = None,
    state_dir: StateOpt = None,
) -> None:
    """Show one request (what ran, what it cost, every alternative considered), or one
    plain-language run (its plan, and each of its steps the same way)."""
    try:
        store = _ledger(ledger, state_dir)
        rec = store.get(request_id)
        run = store.get_run(request_id) if rec is None else None
        store.close()
    except TierwiseError as exc:
        raise fail(exc) from exc
    if run is not None:
        _print_run(*run)
        return
    if rec is None:
        print_error(f"no request or run {request_id!r} in the ledger")
        raise typer.Exit(1)
    _print_request(rec)


def _print_run(run: RunRecord, steps: list[RequestRecord]) -> None:
    """A run: what was asked, the graph and how each step went, then each step's record."""
    info = run.explain
    console.print(
        f"run {run.id} (key {run.api_key}): {run.status}, planned by {run.planner}; "
        f"{run.latency_ms:.0f} ms; ${run.usd_modelled:.9f} (modelled)\n  asked: {run.request}"
    )
    if "error" in info:
        console.print(f"  refused: {info['error']}")
    for step in info.get("steps", []):
        where = f" on {','.join(step['tiers'])} by {step['plan']}" if step.get("plan") else ""
        said = step.get("output", {}).get("text") or step.get("error", "")
        console.print(f"  step {step['node']} {step['task']}: {step['status']}{where}: {said}")
    if run.answer is not None:
        console.print(f"  answer ({info.get('answer', {}).get('how', '?')}): {run.answer}")
    for rec in steps:
        console.print("")
        _print_request(rec)


def _print_request(rec: RequestRecord) -> None:
    console.print(
        f"request {rec.id} ({rec.task} {rec.model}, key {rec.api_key}): {rec.status}, "
        f"plan {rec.plan} on {rec.tiers or '-'}{' [OFFLINE]' if rec.offline else ''}\n"
        f"  latency {rec.latency_ms:.1f} ms (predicted {rec.predicted_latency_ms:.1f}); "
        f"${rec.usd_modelled:.9f} modelled (predicted {rec.predicted_usd_modelled:.9f}; "
        f"all-cloud {rec.cloud_usd_modelled:.9f}); {rec.joules_modelled:.3f} J modelled"
        f"{_measured_joules(rec.joules_measured)}; {rec.bytes_up} B up, {rec.bytes_down} B down; "
        f"tokens {rec.tokens_in}/{rec.tokens_out}"
    )
    if rec.error:
        console.print(f"  error: {rec.error}")
    _print_decision(rec.explain)


def _ledger(url: str | None, state_dir: Path | None) -> Ledger:
    from tierwise.ledger.store import Ledger
    from tierwise.runtime.state import ClusterState

    if url is None:
        url = ClusterState.load(state_dir_or_default(state_dir)).ledger_url
    return Ledger(url)


def _print_report(result: Report) -> None:
    for title, groups in (
        ("by tier", result.by_tier),
        ("by model", result.by_model),
        ("by day", result.by_day),
    ):
        console.print(_report_table(title, groups))
    t = result.total
    share = f"{t.savings / t.cloud_usd:.1%}" if t.cloud_usd > 0 else "n/a"
    console.print(
        f"{t.requests} requests ({t.served} served; {dict(result.by_status)}): spent ${t.usd:.6f}; "
        f"all-cloud would have cost ${t.cloud_usd:.6f}; saved ${t.savings:.6f} ({share}); "
        "all dollars and joules modelled (price tables; watts × seconds)"
    )


def _measured_joules(joules: float | None) -> str:
    return "" if joules is None else f", {joules:.3f} J compute measured (RAPL)"


def _report_table(title: str, groups: dict[str, Any]) -> Table:
    from tierwise.units import format_bytes

    table = Table(title=title)
    for col in (
        "",
        "requests",
        "spent $ modelled",
        "all-cloud $ modelled",
        "saved $ modelled",
        "tokens in/out",
        "bytes ↑/↓",
        "J modelled",
        "p50 ms",
    ):
        table.add_column(col, justify="right" if col else "left")
    for key, g in sorted(groups.items()):
        table.add_row(
            key,
            str(g.requests),
            f"{g.usd:.6f}",
            f"{g.cloud_usd:.6f}",
            f"{g.savings:.6f}",
            f"{g.tokens_in}/{g.tokens_out}",
            f"{format_bytes(g.bytes_up)}/{format_bytes(g.bytes_down)}",
            f"{g.joules:.1f}",
            f"{g.p50_ms:.0f}",
        )
    return table


def _weights(weights: dict[str, float] | None) -> str:
    if not weights:
        return ""
    return "; weights " + ", ".join(f"{k} {v:g}" for k, v in weights.items())


def _print_decision(info: dict[str, Any]) -> None:
    """The planner's record of one request: its policy, what its content changed, relaxed
    constraints, attempts, plans weighed."""
    if policy := info.get("policy"):
        shown = "; ".join(f"{k}={v}" for k, v in policy.items() if k != "weights")
        console.print(f"  policy: {shown or 'none set'}" + _weights(policy.get("weights")))
    if privacy := info.get("privacy"):
        console.print(f"  privacy: found {', '.join(privacy['pii'])}; {privacy['action']}")
    if info.get("relaxed"):
        console.print(f"  relaxed constraints: {', '.join(info['relaxed'])}")
    if floor := info.get("quality_floor"):
        console.print(f"  quality floor: {_floor_line(floor)}")
    for attempt in info.get("attempts", []):
        console.print(
            f"  attempt {attempt['plan']}: {attempt['outcome']} {attempt.get('error') or ''}"
        )
    table = Table(title="plans considered")
    # Predicted figures: $ from the price tables and J from watts × seconds are modelled.
    columns = ("rank", "plan", "latency ms", "$ modelled", "J modelled", "bytes ↑")
    for col in (*columns, "accuracy", "agreement", "excluded because"):
        table.add_column(col)
    for row in sorted(info.get("considered", []), key=lambda r: r["rank"] or 10**6):
        table.add_row(
            str(row["rank"] or "-"),
            row["plan"],
            f"{row['latency_ms']:.1f}",
            f"{row['usd_modelled']:.2e}",
            f"{row['joules_modelled']:.2f}",
            str(row["bytes_up"]),
            str(row["quality"]),
            str(row.get("agreement")),
            row["excluded"] or "",
        )
    console.print(table)


def _floor_line(floor: dict[str, Any]) -> str:
    if floor.get("unjudged"):
        return f"not applied: {floor['unjudged']}"
    if floor.get("floor") is None:
        return "none (quality: any, or no measured qualities to judge)"
    return (
        f"accuracy ≥ {floor['floor']} (best {floor['best']} less max_quality_loss "
        f"{floor['max_quality_loss']})"
    )
