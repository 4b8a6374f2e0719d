"""Writing benchmark results: one JSON file and one Markdown file per suite."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import tierwise


def environment() -> dict[str, Any]:
    """Where the numbers were taken, so results from different machines are not mixed."""
    import os

    return {
        "tierwise": tierwise.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: Path, suite: str, data: dict[str, Any], markdown: str) -> list[Path]:
    """Write ``<suite>.json`` and ``<suite>.md`` atomically (never half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, text in (
        (out_dir / f"{suite}.json", json.dumps(data, indent=2, default=str)),
        (out_dir / f"{suite}.md", markdown),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
