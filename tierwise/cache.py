"""Where tierwise keeps files it derives and can always rebuild (decoded data sets, the
distilled MiniLM table). Fixed, not read from the environment: settings are read only
at the edge (the CLI and the process entry points)."""

from __future__ import annotations

from pathlib import Path


def cache_dir() -> Path:
    return Path.home() / ".cache" / "tierwise"
