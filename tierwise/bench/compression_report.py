"""``tierwise bench compression``'s results: rows, tables, the Markdown and the plot.

Measuring is :mod:`tierwise.bench.compression`; this module only holds what was
measured and shows it, and reads an earlier results file back (``--keep-others``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from tierwise.bench.report import markdown_table
from tierwise.codecs.training.scoring import CodecScore


@dataclass(frozen=True)
class Row:
    family: str  # input / uniform / learned / fitted
    score: CodecScore
    latency_ms: float  # one image end to end at 250 KB/s

    def quality(self, metric: str) -> float:
        return float(self.score.accuracy or 0.0) if metric == "accuracy" else self.score.agreement


@dataclass
class Section:
    """One task's rows, and what they are measured against."""

    key: str
    title: str
    metric: str  # "accuracy" (against labels) or "agreement" (with the unsplit network)
    reference: float  # the unsplit network's value of the metric
    images: int
    stage_ms: list[float]
    rows: list[Row] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)

    def loss_pt(self, r: Row) -> float:
        return 100 * (self.reference - r.quality(self.metric))


def previous_sections(out: Path) -> list[Section]:
    """The tasks of the last ``compression.json`` in ``out``, rebuilt (none if there is none)."""
    path = out / "compression.json"
    if not path.is_file():
        return []
    tasks: dict[str, dict[str, Any]] = json.loads(path.read_text()).get("tasks", {})
    sections = []
    for key, t in tasks.items():
        fields = CodecScore.__dataclass_fields__
        rows = [
            Row(
                r["family"],
                CodecScore(**{k: v for k, v in r.items() if k in fields}),
                r["latency_ms_at_250KBps"],
            )
            for r in t["rows"]
        ]
        section = Section(key, t["title"], t["metric"], t["unsplit"], t["images"], t["stage_ms"])
        section.rows, section.targets = rows, t["targets"]
        sections.append(section)
    return sections


def section_json(s: Section) -> dict[str, Any]:
    return {
        "title": s.title,
        "metric": s.metric,
        "unsplit": s.reference,
        "images": s.images,
        "stage_ms": s.stage_ms,
        "rows": [
            {
                "family": r.family,
                **r.score.as_dict(),
                "loss_pt": s.loss_pt(r),
                "latency_ms_at_250KBps": r.latency_ms,
            }
            for r in s.rows
        ],
        "targets": s.targets,
    }


_HEADERS = [
    "family",
    "codec",
    "split",
    "wire B",
    "payload B",
    "quality %",
    "loss pt",
    "agreement %",
    "enc ms",
    "dec ms",
    "latency ms @250KB/s",
]


def _cells(s: Section, r: Row) -> list[str]:
    c = r.score
    return [
        r.family,
        c.codec,
        str(c.split),
        f"{c.wire_bytes:.1f}",
        f"{c.payload_bytes:.1f}",
        f"{100 * r.quality(s.metric):.2f}",
        f"{s.loss_pt(r):+.2f}",
        f"{100 * c.agreement:.2f}",
        f"{c.encode_ms:.3f}",
        f"{c.decode_ms:.3f}",
        f"{r.latency_ms:.2f}",
    ]


def _ordered(s: Section) -> list[Row]:
    trained = ("learned", "fitted")
    return sorted(s.rows, key=lambda r: (r.family not in trained, r.score.wire_bytes))


def markdown(sections: list[Section]) -> str:
    parts = [
        "# Compression: bytes per image against quality",
        "",
        "Bytes are per image, one wire message each. *Payload* is what the codec produces;"
        " *wire* adds the 20-byte header, shape and JSON metadata. Quality is the task's"
        " metric; loss is in points against the unsplit network. Latency: one image at"
        " 250 KB/s, compute on this machine.",
    ]
    for s in sections:
        parts += [
            "",
            f"## {s.title}",
            "",
            f"{s.images} instances; unsplit network: {100 * s.reference:.2f}% {s.metric}.",
            "",
            *[f"- {line}" for line in s.targets["lines"]],
            "",
            markdown_table(_HEADERS, [_cells(s, r) for r in _ordered(s)]),
        ]
    return "\n".join(parts)


def rich_table(s: Section) -> Table:
    table = Table(title=f"{s.title} (unsplit {100 * s.reference:.2f}%)")
    for h in _HEADERS:
        table.add_column(h, justify="left" if h in ("family", "codec") else "right")
    for r in _ordered(s):
        table.add_row(*_cells(s, r))
    return table


def plot(sections: list[Section], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sections), figsize=(8 * len(sections), 5), squeeze=False)
    for ax, s in zip(axes[0], sections, strict=True):
        groups: dict[str, list[Row]] = {}
        for r in s.rows:
            groups.setdefault(_series(r), []).append(r)
        for label, members in sorted(groups.items()):
            members.sort(key=lambda r: r.score.wire_bytes)
            xs = [r.score.wire_bytes for r in members]
            ys = [100 * r.quality(s.metric) for r in members]
            trained = label.startswith(("learned", "fitted"))
            style = "-" if trained else "--" if "split" in label else ":"
            ax.plot(xs, ys, marker="o", markersize=3, label=label, linewidth=1, linestyle=style)
        ax.axhline(100 * s.reference, color="black", linewidth=0.8, linestyle=":", label="unsplit")
        ax.set_xscale("log")
        ax.set_xlabel("bytes per image on the wire (log)")
        ax.set_ylabel(f"{s.metric} (%)")
        ax.set_ylim(max(0, 100 * s.reference - 15), 100 * s.reference + 2)
        ax.set_title(s.title, fontsize=9)
        ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _series(r: Row) -> str:
    name = r.score.codec
    if r.family == "input":
        return "png" if name == "png" else name.rstrip("0123456789")
    if r.family in ("learned", "fitted"):
        return f"{r.family} @split {r.score.split}"
    zstd = "+zstd" if "+zstd" in name else ""
    return f"uniform 8/4/2-bit{zstd} @split {r.score.split}"
