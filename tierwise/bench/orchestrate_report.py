"""``tierwise bench orchestrate``'s results shown: rich tables, the Markdown and the plot.

Measuring is :mod:`tierwise.bench.orchestrate`; this module reads its report (the JSON
written to ``orchestrate.json``) and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from tierwise.bench.report import markdown_table

GROUPS = ("overall", "single", "chain", "dag")
_MAIN = [
    "planner",
    "records",
    "node F1",
    "edge F1 (resource)",
    "edge F1 (task_links)",
    "argument F1",
    "valid %",
    "p50 ms",
    "p95 ms",
    "tier",
    "$/plan (modelled)",
]
_BY_TYPE = ["planner", "type", "records", "node F1", "edge F1", "task-link F1", "arg F1", "valid %"]
_CV = ["stage", "features", "cue weight", "l2", "MiniLM, knn", "threshold", "links", "decoder",
       "node F1", "edge F1", ""]  # fmt: skip


def _f1(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def main_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in report["planners"]:
        g = p["groups"]["overall"]
        rows.append([
            p["planner"], str(g["examples"]), _f1(g["node_f1"]), _f1(g["edge_f1"]),
            _f1(g["link_f1"]),
            _f1(g["argument_f1"]), f"{100 * g['valid']:.1f}", f"{p['p50_ms']:.2f}",
            f"{p['p95_ms']:.2f}", p["tier"], f"{p['usd_per_plan']:.4f}",
        ])  # fmt: skip
    for ref in report["published"]:
        rows.append([
            f"{ref['planner']} (published, all records)", "all", f"{ref['node_f1']:.2f}",
            f"{ref['edge_f1']:.2f}", "—", "—", "—", "—", "—", "cloud", "—",
        ])  # fmt: skip
    return rows


def type_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in report["planners"]:
        for name in GROUPS:
            g = p["groups"][name]
            rows.append([
                p["planner"], name, str(g["examples"]), _f1(g["node_f1"]), _f1(g["edge_f1"]),
                _f1(g["link_f1"]), _f1(g["argument_f1"]), f"{100 * g['valid']:.1f}",
            ])  # fmt: skip
    return rows


def cv_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per feature design its best threshold, then every structure tried; the chosen
    design marked."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in (r for r in report["cv"] if r["stage"] == "tools"):
        d = row["design"]
        key = (d["features"], d["cue_weight"], d["l2"], d.get("embed"), d.get("knn"))
        if key not in best or row["node_f1"] > best[key]["node_f1"]:
            best[key] = row
    shown = [*best.values(), *(r for r in report["cv"] if r["stage"] == "structure")]
    out = []
    for row in shown:
        d = row["design"]
        chosen = "chosen" if row["stage"] == "structure" and d == report["chosen"] else ""
        links = "+".join(d["links"]) if row["stage"] == "structure" else "—"
        decoder = d["decoder"] if row["stage"] == "structure" else "—"
        minilm = f"{d.get('embed', 0.0):g}, {d.get('knn', 0.0):g}"
        out.append([
            row["stage"], d["features"], f"{d['cue_weight']:g}", f"{d['l2']:g}", minilm,
            f"{d['threshold']:g}", links, decoder, _f1(row["node_f1"]), _f1(row["edge_f1"]),
            chosen,
        ])  # fmt: skip
    return out


def subset_note(report: dict[str, Any]) -> str:
    """What the rows on a part of the test split are, and how the LLM planner did."""
    lines = []
    for p in report["planners"]:
        notes = p.get("notes") or {}
        if "model" in notes:
            lines.append(
                f"{p['planner']}: {notes['model']}; {notes['retried']} plans retried once, "
                f"{len(notes['refused'])} refused (counted as no graph)."
            )
    if lines:
        lines.insert(0, "Rows marked 'first N' are on the first N test records only; the "
                     "graph types there are in the table by type.")  # fmt: skip
    return " ".join(lines)


def rich_tables(report: dict[str, Any]) -> list[Table]:
    n = report["data"]["test"]
    specs = [
        (f"planners on TaskBench (huggingface tools), test split: {n} records", _MAIN,
         main_rows(report)),
        ("by graph type (test split)", _BY_TYPE, type_rows(report)),
        (f"the learned planner's design: {report['data']['train']}-record train split, "
         "cross-validated", _CV, cv_rows(report)),
    ]  # fmt: skip
    tables = []
    for title, headers, rows in specs:
        table = Table(title=title, caption=subset_note(report) if headers is _MAIN else None)
        for h in headers:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def markdown(report: dict[str, Any]) -> str:
    env, data = report["environment"], report["data"]
    parts = [
        "# Orchestrate: planning plain-language requests (TaskBench, huggingface tools)",
        f"Train {data['train']} records, test {data['test']} records (TaskBench's aligned "
        f"records, split by id). {env['when']}, {env['cpus']} CPUs, Python {env['python']}.",
        "Ours are on the test split; the published rows are TaskBench's own figures on all "
        "its records of this domain, printed for scale, not measured here. Edge F1 "
        "(resource) is TaskBench's: links from `<node-k>` arguments; edge F1 (task_links) "
        "uses the links as the records state them. Latency is one plan on this machine; "
        "$ per plan is modelled (0 for planners that run locally).",
        markdown_table(_MAIN, main_rows(report)),
        subset_note(report),
        "## By graph type",
        markdown_table(_BY_TYPE, type_rows(report)),
        "## How the learned planner's design was chosen (train split only, k-fold CV)",
        "Tools: each feature design's best threshold by CV node F1. Structure: with the "
        "chosen tools, each link feature set and decoder by CV edge F1 (resource). The "
        "test split was used once, for the tables above.",
        markdown_table(_CV, cv_rows(report)),
    ]  # fmt: skip
    return "\n\n".join(p for p in parts if p)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, node, edge, published = [], [], [], []
    for p in report["planners"]:
        g = p["groups"]["overall"]
        names.append(p["planner"])
        node.append(g["node_f1"] or 0.0)
        edge.append(g["edge_f1"] or 0.0)
        published.append(False)
    for ref in report["published"]:
        names.append(f"{ref['planner']}\n(published,\nall records)")
        node.append(ref["node_f1"])
        edge.append(ref["edge_f1"])
        published.append(True)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4.2))
    xs = list(range(len(names)))
    for offset, values, label, colour in ((-0.2, node, "node F1", "tab:blue"),
                                          (0.2, edge, "edge F1", "tab:orange")):  # fmt: skip
        bars = ax.bar([x + offset for x in xs], values, width=0.4, label=label, color=colour)
        for bar, is_published in zip(bars, published, strict=True):
            if is_published:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    ax.set_xticks(xs)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"TaskBench huggingface tools: ours on {report['data']['test']} test records")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
