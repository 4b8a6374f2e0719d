"""``tierwise bench routing``: the learned router and the cascade against every baseline.

For each ``<task>_train.csv`` / ``<task>_test.csv`` pair in a RouterBench-form folder:
train on the train split only (learner chosen by cross-validation there), then on the
test split trace the cost–accuracy curve of the router, the cascade (replayed from the
stored answers), a kNN router, each single model, random mixing and the oracle. Test
rows where any model's label is missing are left out, so every policy is scored on the
same prompts. Writes ``routing.json``, ``routing.md`` and ``routing.png``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tierwise.bench.report import environment, markdown_table, write_results
from tierwise.routing.dataset import RoutingData, find_tasks, load_csv
from tierwise.routing.features import Encoder, featurize, make_encoder
from tierwise.routing.learners import make
from tierwise.routing.metrics import Point, accuracy_at, aiq, auroc, upper_hull
from tierwise.routing.replay import curves, vote_cascade
from tierwise.routing.replay.cascade import Cascade, default_chain
from tierwise.routing.router import Router, sweep_points

LATENCY_PROMPTS = 200


@dataclass(frozen=True)
class VotePolicy:
    """A vote cascade from the train frontier whose test point is on its test hull."""

    description: str
    test_point: Point


@dataclass
class TaskResult:
    task: str
    n_train: int
    n_test: int
    reference: str
    hulls: dict[str, list[Point]]  # policy → hull points on the test split
    singles: dict[str, Point]
    oracle: Point
    chosen: dict[str, Any]
    latency_ms: dict[str, dict[str, float]]
    cascade_chain: list[str]
    vote_policies: list[VotePolicy]

    def summary(self) -> dict[str, Any]:
        ref_usd, ref_acc = self.singles[self.reference]
        lo = min(c for c, _ in self.singles.values())
        hi = max(c for c, _ in self.singles.values())
        near = 0.95 * ref_acc
        cheapest_95 = min((c for c, a in self.singles.values() if a >= near), default=float("inf"))
        front = curves.frontier(self.singles)
        rows = {}
        for name, hull in self.hulls.items():
            margins = [accuracy_at(hull, c) - a for c, a in front.points]
            rows[name] = {
                "aiq": aiq(hull, lo, hi),
                "cost_at_ref_acc": curves.cost_to_reach(hull, ref_acc) / ref_usd,
                "cost_at_95": curves.cost_to_reach(hull, near) / cheapest_95,
                "cost_at_95_vs_ref": curves.cost_to_reach(hull, near) / ref_usd,
                "min_margin_vs_frontier": float(np.nanmin(np.nan_to_num(margins, nan=-1.0))),
            }
        return {
            "reference": self.reference,
            "ref_acc": ref_acc,
            "ref_usd": ref_usd,
            "acc_95": near,
            "cheapest_single_at_95_usd": cheapest_95,
            "policies": rows,
        }


def _aucs(p: np.ndarray, correct: np.ndarray, models: list[str]) -> dict[str, float]:
    """Per model: how well the predictions rank its right answers above its wrong ones."""
    return {m: auroc(p[:, j], correct[:, j] > 0.5) for j, m in enumerate(models)}


def complete_rows(data: RoutingData) -> RoutingData:
    keep = np.flatnonzero(~np.isnan(data.correct).any(1) & ~np.isnan(data.cost).any(1))
    return data.subset(keep)


def _reference(train: RoutingData) -> str:
    """The best single model on the training split (GPT-4 on both shared tasks)."""
    acc = np.nanmean(train.correct, axis=0)
    usd = np.nanmean(train.cost, axis=0)
    return train.models[int(np.lexsort((usd, -acc))[0])]


def _latency(router: Router, prompts: list[str]) -> dict[str, float]:
    router.decide(prompts[0])  # first call loads lazily; not a decision
    times = [router.decide(p).decision_ms for p in prompts[:LATENCY_PROMPTS]]
    return {
        "p50": statistics.median(times),
        "p95": float(np.percentile(times, 95)),
        "n": len(times),
    }


def run_task(
    task: str,
    train_path: Path,
    test_path: Path,
    encoders: dict[str, Encoder],
    say: Callable[[str], None],
) -> TaskResult:
    train, test = load_csv(train_path), complete_rows(load_csv(test_path))
    correct, cost = test.filled()
    hulls: dict[str, list[Point]] = {}
    chosen, latency = {}, {}
    routers = {}
    for label, encoder in encoders.items():
        say(f"[{task}] training the router on {len(train)} prompts ({encoder.name})")
        router = Router.train(train, encoder, progress=lambda m: say(f"  {m}"))
        routers[label] = router
        p = router.predict(test.prompts)
        hulls[label] = upper_hull(sweep_points(p, correct, cost, router.usd))
        chosen[label] = {
            "test_auc": _aucs(p, correct, test.models),
            "learner": router.learner.kind,
            "params": router.learner.params,
            "cv": [s.__dict__ for s in router.cv],
        }
        latency[label] = _latency(router, test.prompts)
    main = routers[next(iter(routers))]
    x_train = featurize(main.encoder, main.template, train.prompts)
    x_test = featurize(main.encoder, main.template, test.prompts)
    knn = make("knn", {"k": 20, "dim": 384}).fit(x_train, train.correct)
    hulls["kNN router"] = upper_hull(sweep_points(knn.predict(x_test), correct, cost, main.usd))
    say(f"[{task}] training the cascade")
    tr_correct, tr_cost = train.filled()
    chain = default_chain(
        curves.single_model_points(train.models, tr_correct, tr_cost), train.models
    )
    assert main.oof is not None  # set by Router.train
    p_oof = main.oof
    cascade = Cascade.train(chain, p_oof, train.responses, tr_correct)
    hulls["cascade"] = upper_hull(
        cascade.replay(main.learner.predict(x_test), test.responses, correct, cost)
    )
    say(f"[{task}] searching vote cascades on the train split")
    hulls["vote cascade"], vote_policies = _vote_cascades(complete_rows(train), test)
    singles = curves.single_model_points(test.models, correct, cost)
    hulls["random mixing"] = curves.random_mix_points(singles)
    return TaskResult(
        task,
        len(train),
        len(test),
        _reference(train),
        hulls,
        singles,
        curves.oracle_point(correct, cost),
        chosen,
        latency,
        [train.models[c] for c in chain],
        vote_policies,
    )


def _vote_cascades(train: RoutingData, test: RoutingData) -> tuple[list[Point], list[VotePolicy]]:
    """The train frontier of vote cascades replayed on test: its hull, and who is on it."""
    tr_correct, tr_cost = train.filled()
    front = vote_cascade.search(vote_cascade.key_matrix(train.responses), tr_correct, tr_cost)
    correct, cost = test.filled()
    test_keys = vote_cascade.key_matrix(test.responses)
    points = vote_cascade.replay_front(front, tr_correct, tr_cost, test_keys, correct, cost)
    hull = upper_hull(points)
    on_hull = set(hull)
    policies = [
        VotePolicy(policy.describe(test.models), point)
        for policy, point in zip(front, points, strict=True)
        if point in on_hull
    ]
    return hull, policies


def run_routing_bench(
    data_dir: Path, console: Console, out: Path, encoders: list[str] | None = None
) -> dict[str, Any]:
    names = encoders or ["minilm-static", "minilm"]
    built = {_label(n): make_encoder(n) for n in names}
    results = [run_task(t, tr, te, built, console.log) for t, tr, te in find_tasks(data_dir)]
    data = {
        "environment": environment(),
        "data": str(data_dir),
        "tasks": {r.task: _task_json(r) for r in results},
    }
    markdown = _markdown(results)
    write_results(out, "routing", data, markdown)
    _plot(results, out / "routing.png")
    for r in results:
        console.print(_rich_table(r))
    console.print(f"wrote {out / 'routing.md'}, routing.json and routing.png")
    return data


def _label(encoder: str) -> str:
    return "router" if encoder == "minilm-static" else f"router ({encoder})"


def _task_json(r: TaskResult) -> dict[str, Any]:
    return {
        "n_train": r.n_train,
        "n_test": r.n_test,
        "summary": r.summary(),
        "hulls": r.hulls,
        "singles": r.singles,
        "oracle": r.oracle,
        "chosen": r.chosen,
        "decision_latency_ms": r.latency_ms,
        "cascade_chain": r.cascade_chain,
        "vote_policies": [v.__dict__ for v in r.vote_policies],
    }


def _rows(r: TaskResult) -> list[list[str]]:
    s = r.summary()
    rows = []
    for name, m in s["policies"].items():
        lat = r.latency_ms.get(name)
        rows.append(
            [
                name,
                f"{m['aiq']:.4f}",
                _frac(m["cost_at_ref_acc"]),
                _frac(m["cost_at_95"]),
                _frac(m["cost_at_95_vs_ref"]),
                f"{m['min_margin_vs_frontier']:+.3f}",
                f"{lat['p50']:.2f}" if lat else "—",
            ]
        )
    best = max(r.singles.items(), key=lambda kv: kv[1][1])
    rows.append(
        ["oracle", "—", f"{r.oracle[0] / s['ref_usd']:.3f} (acc {r.oracle[1]:.3f})"] + ["—"] * 4
    )
    rows.append([f"best single: {best[0]}"] + ["—"] * 6)
    return rows


HEADERS = [
    "policy",
    "AIQ",
    "cost at ref acc ÷ ref cost (target ≤ 0.5)",
    "cost at 95% of ref acc ÷ cheapest single there (target ≤ 0.75)",
    "cost at 95% of ref acc ÷ ref cost",
    "min acc margin over single-model frontier (target ≥ 0)",
    "decision p50 ms (≤ 5)",
]


def _frac(x: float) -> str:
    return "never" if np.isinf(x) else f"{x:.3f}"


def _markdown(results: list[TaskResult]) -> str:
    parts = [
        "# Routing benchmark",
        "",
        "Trained on each task's train split (learner picked by 5-fold CV there); every "
        "number below is on the test split. `tierwise bench routing --data DIR`.",
        "",
    ]
    for r in results:
        s = r.summary()
        parts += [
            f"## {r.task} (train {r.n_train}, test {r.n_test} complete rows)",
            "",
            f"Reference: {s['reference']}, accuracy {s['ref_acc']:.3f} at "
            f"${s['ref_usd']:.6f}/query (modelled: RouterBench's token costs); "
            f"95% of it is {s['acc_95']:.3f}.",
            "",
            markdown_table(HEADERS, _rows(r)),
            "",
            "Single models (test):",
            "",
            markdown_table(
                ["model", "$/query modelled", "accuracy"],
                [
                    [m, f"{c:.6f}", f"{a:.3f}"]
                    for m, (c, a) in sorted(r.singles.items(), key=lambda kv: kv[1][0])
                ],
            ),
            "",
            f"Cascade chain: {' → '.join(r.cascade_chain)}",
            "",
            "Vote cascades on the test hull (searched on train; each stage's models are "
            "asked together; the majority answers when enough agree, else the next stage):",
            "",
            markdown_table(
                ["policy", "$/query modelled", "accuracy"],
                [
                    [v.description, f"{v.test_point[0]:.6f}", f"{v.test_point[1]:.3f}"]
                    for v in r.vote_policies
                ],
            ),
            "",
            "Learners tried (5-fold CV AIQ on train): "
            + ", ".join(f"{_learner_label(c)} {c['aiq']:.4f}" for c in r.chosen["router"]["cv"]),
            "",
            "Router test AUC per model (0.5 = no signal): "
            + ", ".join(
                f"{m.split('/')[-1]} {a:.2f}" for m, a in r.chosen["router"]["test_auc"].items()
            ),
            "",
        ]
    return "\n".join(parts)


def _learner_label(candidate: dict[str, Any]) -> str:
    """'logistic (l2 0.1)': the grid tries one learner with several settings, so name them."""
    kind = str(candidate["kind"])
    shown = {k: v for k, v in candidate["params"].items() if k != "epochs"}
    if not shown:
        return kind
    return f"{kind} ({', '.join(f'{k} {v:g}' for k, v in shown.items())})"


def _rich_table(r: TaskResult) -> Table:
    table = Table(title=f"routing: {r.task} (test split)")
    for h in ["policy", "AIQ", "cost@ref", "cost@95% ÷single", "cost@95% ÷ref", "margin", "p50 ms"]:
        table.add_column(h)
    for row in _rows(r):
        table.add_row(*row)
    return table


def _plot(results: list[TaskResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        for name, hull in r.hulls.items():
            xs, ys = zip(*hull, strict=True)
            ax.plot(xs, ys, marker=".", label=name, linestyle="--" if "mixing" in name else "-")
        for m, (c, a) in r.singles.items():
            ax.scatter([c], [a], color="grey", s=12)
            ax.annotate(m.split("/")[-1], (c, a), fontsize=6)
        ax.scatter([r.oracle[0]], [r.oracle[1]], marker="*", s=80, color="black", label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("mean $ per query, modelled from token prices (log)")
        ax.set_ylabel("accuracy")
        ax.set_title(r.task)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
