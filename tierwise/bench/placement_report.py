"""What `tierwise bench placement` prints and writes: tables, step changes, the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tierwise.bench import placement_policies as pol
from tierwise.bench.report import markdown_table


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _used(cell: dict[str, Any]) -> str:
    used: dict[str, int] = cell["plans_used"]
    return ", ".join(f"{p} ×{n}" for p, n in sorted(used.items(), key=lambda kv: -kv[1]))


def regret_rows(data: dict[str, Any], policy: str) -> list[list[str]]:
    rows = []
    for step, judged in zip(data["steps"], data["judged"][policy], strict=True):
        auto = step["plans"][f"auto:{policy}"]
        if judged["best"] is None:
            rows.append([f"{step['kbps']:g}", _pct(judged["floor"]), "none qualifies", "", ""])
            continue
        rows.append(
            [
                f"{step['kbps']:g}",
                _pct(judged["floor"]),
                judged["best"],
                f"{judged['best_p50_ms']:.0f}",
                f"{auto['p50_ms']:.0f}",
                f"{judged['regret']:+.1%}",
                "n/a" if judged["choice_regret"] is None else f"{judged['choice_regret']:+.1%}",
                _used(auto),
            ]
        )
    return rows


REGRET_HEADERS = ["KB/s", "floor", "best qualifying fixed plan", "its p50 ms", "auto p50 ms"]
REGRET_HEADERS += ["regret (measured)", "regret of its choices", "auto chose"]
PLAN_HEADERS = ["KB/s", "plan", "accuracy (profiled)", "p50 ms", "p95 ms", "KB/req"]
PLAN_HEADERS += ["$/req modelled", "J/req modelled", "correct (served)"]


def plan_rows(data: dict[str, Any]) -> list[list[str]]:
    quality = data["plan_quality"]
    rows = []
    for step in data["steps"]:
        for name, c in step["plans"].items():
            rows.append(
                [
                    f"{step['kbps']:g}",
                    name,
                    _pct(quality.get(name)),
                    f"{c['p50_ms']:.0f}",
                    f"{c['p95_ms']:.0f}",
                    f"{c['bytes'] / 1e3:.1f}",
                    f"{c['usd_modelled']:.2e}",
                    f"{c['joules_modelled']:.2f}",
                    f"{c['correct']}/{c['n']}",
                ]
            )
    return rows


def served_accuracy_rows(data: dict[str, Any]) -> list[list[str]]:
    """Each plan's accuracy on the served half, pooled over rates (distinct photos)."""
    names = list(data["steps"][0]["plans"])
    rows = []
    for name in names:
        correct = sum(s["plans"][name]["correct"] for s in data["steps"])
        n = sum(s["plans"][name]["n"] for s in data["steps"])
        rows.append([name, _pct(data["plan_quality"].get(name)), f"{correct / n:.1%} of {n}"])
    return rows


def changes_text(data: dict[str, Any]) -> str:
    if not data["step_changes"]:
        return "No bandwidth step changed the best qualifying fixed plan under any policy."
    lines = []
    for c in data["step_changes"]:
        followed = c["requests_to_follow"]
        verdict = "not within 8 requests" if followed is None else f"after {followed} request(s)"
        lines.append(
            f"- **{c['policy']}**, {c['from_kbps']:g} → {c['to_kbps']:g} KB/s: auto followed "
            f"{verdict} (a plan within 10% of the best qualifying one there, or its settled "
            f"one: {', '.join(c['targets'])}). Last plans before: "
            + ", ".join(c["plans_before"][-2:])
            + "; after, in order: "
            + ", ".join(c["plans_after"])
        )
    return "\n".join(lines)


def floor_check(data: dict[str, Any]) -> dict[str, int]:
    """Default-policy requests served below the floor without saying the floor was relaxed."""
    quality = data["plan_quality"]
    cells = [s["plans"]["auto:default"] for s in data["steps"]]
    below = 0
    for cell in cells:
        floor = min(cell["floors"]) if cell["floors"] else None
        for plan, count in cell["plans_used"].items():
            q = quality.get(plan)
            if floor is not None and q is not None and q < floor - pol.EPS:
                below += count
    return {
        "requests": sum(c["n"] for c in cells),
        "relaxed": sum(c["relaxed"] for c in cells),
        "below_floor_known": below,
    }


def chat_text(chat: dict[str, Any]) -> str:
    if chat["same_everywhere"]:
        models = sorted({m for ms in chat["by_tier"].values() for m in ms})
        return (
            f"Every tier runs the same chat model ({', '.join(models) or 'none'}): auto and "
            "all-cloud would answer with one model, so no saving is printed. A chat saving "
            "needs tiers with different models, priced by the router's predicted quality."
        )
    return "Tiers run different chat models: see `tierwise bench routing` for savings."


def markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    acc = ", ".join(f"{m} {a:.1%}" for m, a in data["model_accuracy"].items())
    setup = (
        f"{env['when']}, {env['cpus']} CPUs. Produced by `tierwise bench placement --data "
        "DATA` (DATA: the shared data folder). Classify requests go to `model=auto`, so the "
        "planner picks the model as well as where it runs. Photos: the labelled ImageNet "
        f"samples, uploaded as their own JPEG files; each plan's accuracy was measured on "
        f"{data['profiled_photos']} of them (the even-numbered), and the "
        f"{data['photos_per_cell']} photos of each cell come from the other "
        f"{data['served_photos']}, different ones at each rate. Whole models measured: {acc}. "
        "The device is EMULATED (speed factor 0.25); both device links are EMULATED at each "
        "rate (RTT 20 ms to the edge, 80 ms to the cloud). Latency is measured by the client "
        "through the gateway. Dollars and joules are modelled (price tables and stated watts "
        "× measured seconds and bytes)."
    )
    parts = ["# tierwise bench placement", setup, "## Policies"]
    parts.append("\n".join(f"- **{p['name']}**: {p['why']}" for p in data["policies"]))
    for p in data["policies"]:
        parts += [f"## Auto against the best qualifying fixed plan: {p['name']}"]
        parts.append(markdown_table(REGRET_HEADERS, regret_rows(data, p["name"])))
    check = floor_check(data)
    parts += [
        "## Adaptation (only where the best qualifying fixed plan changes)",
        changes_text(data),
        "## Default policy: the quality floor held",
        f"{check['requests']} default-policy requests: {check['below_floor_known']} served by "
        f"a plan below the floor the gateway reported, {check['relaxed']} said the floor or "
        "another constraint was relaxed.",
        "## Accuracy: profiled half against served half",
        markdown_table(["plan", "profiled", "served"], served_accuracy_rows(data)),
        "## Every plan at every rate",
        markdown_table(PLAN_HEADERS, plan_rows(data)),
        "## Chat workload",
        chat_text(data["chat"]),
    ]
    return "\n\n".join(parts)


def plot(data: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = [p["name"] for p in data["policies"]]
    cols = min(2, len(policies))
    rows = -(-len(policies) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(7 * cols, 4.8 * rows + 1.5), sharey=True)
    axes = list(getattr(grid, "ravel", lambda: [grid])())
    rates = [s["kbps"] for s in data["steps"]]
    for ax, policy in zip(axes, policies, strict=False):
        _panel(ax, data, policy, rates)
        ax.set_ylabel("p50 latency, ms (measured)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 1.4 / (4.8 * rows + 1.5), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel(ax: Any, data: dict[str, Any], policy: str, rates: list[float]) -> None:
    judged = data["judged"][policy]
    for plan in data["fixed_plans"]:
        p50 = [s["plans"][plan]["p50_ms"] for s in data["steps"]]
        ok = [plan in j["qualifying"] for j in judged]
        style = {"linewidth": 1.2} if all(ok) else {"linewidth": 0.8, "linestyle": ":"}
        ax.plot(rates, p50, marker=".", label=plan, **style)
    auto = [s["plans"][f"auto:{policy}"] for s in data["steps"]]
    ax.plot(rates, [a["p50_ms"] for a in auto], color="black", linewidth=2.5, label="auto")
    for rate, cell in zip(rates, auto, strict=True):
        ax.annotate(
            pol.settled_plan(cell).removeprefix("efficientnet-")[:30],
            (rate, cell["p50_ms"]),
            fontsize=6,
            rotation=30,
            xytext=(2, 6),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("device link bandwidth, KB/s (EMULATED)")
    ax.set_title(f"policy {policy} (dotted: misses its floor)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


def print_summary(console: Console, data: dict[str, Any]) -> None:
    for p in data["policies"]:
        table = Table(title=f"{p['name']}: {p['why']}")
        for col in REGRET_HEADERS:
            table.add_column(col, justify="right")
        for row in regret_rows(data, p["name"]):
            table.add_row(*row, *([""] * (len(REGRET_HEADERS) - len(row))))
        console.print(table)
    console.print(changes_text(data))
    check = floor_check(data)
    console.print(
        f"default policy: {check['below_floor_known']} of {check['requests']} requests below "
        f"the floor, {check['relaxed']} relaxed"
    )
    console.print(chat_text(data["chat"]))
