"""Where tierwise keeps files it derives and can always rebuild (decoded data sets, the
distilled MiniLM table). Fixed, not read from the environment: settings are read only
at the edge (the CLI and the process entry points)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    return Path.home() / ".cache" / "tierwise"


def save_entry(path: Path, family: str, write: Callable[[Path], None]) -> None:
    """Write one cache entry atomically (``write`` fills a temporary file), then remove the
    entries of the same ``family`` (a file-name prefix) that it supersedes.

    Keys hold the source's size and modification time, or its path, and those change
    whenever the source is copied again (a fresh clone, a re-provisioned data folder).
    Nothing else would ever remove the old entries, and one decoded CIFAR-10 is 185 MB.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)
    for old in path.parent.glob(f"{family}*"):
        # Another process may be writing its own entry: its temporary file stays.
        if old != path and ".tmp" not in old.name:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
