"""Saving named arrays with a JSON header as one ``.npz``: weights without pickle.

A file holds the arrays plus a ``meta`` entry (UTF-8 JSON bytes) whose ``format`` names
what it is; reading checks the format and loads with ``allow_pickle=False``. Writes go
to a temporary file first, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from tierwise.errors import InputError


def write_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    entries = dict(arrays)
    entries["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **cast(dict[str, Any], entries))
    tmp.replace(path)


def read_arrays(path: Path, fmt: str, missing: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and header of ``path``; ``missing`` is the hint when it does not exist."""
    if not path.is_file():
        raise InputError(f"no file at {path}; {missing}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            found = meta.get("format") if isinstance(meta, dict) else None
            if found != fmt:
                raise InputError(f"{path}: format {found!r}, expected {fmt!r}")
            return {k: z[k].copy() for k in z.files if k != "meta"}, meta
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        # a truncated or foreign file: numpy's own errors would not say which file
        raise InputError(f"{path}: not a readable {fmt} file ({exc})") from exc


def read_format(path: Path) -> str | None:
    """The ``format`` a file says it holds (None when it is not such a file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt = json.loads(bytes(z["meta"]).decode()).get("format")
    except (OSError, KeyError, ValueError):
        return None
    return fmt if isinstance(fmt, str) else None
