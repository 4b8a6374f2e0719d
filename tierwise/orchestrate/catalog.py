"""The tool catalog: each tool a plan may name, with the media types it reads and writes.

The default catalog names the 23 tools of TaskBench's "huggingface tools" domain, each
described in our own words (``tierwise/defaults/tools.json``). A catalog in TaskBench's
``tool_desc.json`` form loads as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from tierwise.errors import InputError
from tierwise.orchestrate.graph import NODE_REF, TaskGraph

MediaType = Literal["text", "image", "audio", "video"]
MEDIA_TYPES: tuple[MediaType, ...] = get_args(MediaType)
_EXTENSIONS: dict[str, MediaType] = {
    **dict.fromkeys(("jpg", "jpeg", "png", "gif", "bmp", "tiff", "webp"), "image"),
    **dict.fromkeys(("wav", "mp3", "flac", "ogg", "aac", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "avi", "mov", "mkv", "webm"), "video"),
    **dict.fromkeys(("txt", "md", "csv"), "text"),
}
_FILE = re.compile(r"\b[\w-]+\.(?:" + "|".join(_EXTENSIONS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    inputs: tuple[MediaType, ...]
    outputs: tuple[MediaType, ...]


class Catalog:
    def __init__(self, tools: list[Tool]) -> None:
        self.tools = {t.name: t for t in tools}

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """A catalog in TaskBench's ``tool_desc.json`` form: ``{"nodes": [{id, desc,
        input-type, output-type}]}``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the tool catalog: {exc}") from exc
        return cls.parse(data, str(path))

    @classmethod
    def default(cls) -> Catalog:
        text = resources.files("tierwise.defaults").joinpath("tools.json").read_text("utf-8")
        return cls.parse(json.loads(text), "the embedded tool catalog")

    @classmethod
    def parse(cls, data: Any, where: str) -> Catalog:
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, list) or not nodes:
            raise InputError(f"{where}: expected {{'nodes': [tools]}}")
        return cls([_tool(raw, i, where) for i, raw in enumerate(nodes)])

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def check(self, graph: TaskGraph, files: list[str]) -> None:
        """Refuse a graph naming an unknown tool, a missing node or file, or a cycle, with
        an InputError that names the offender."""
        for i, node in enumerate(graph.nodes):
            if node.task not in self.tools:
                raise InputError(
                    f"task_nodes[{i}].task: unknown tool {node.task!r}; tools: {self.names}",
                    param="task_nodes",
                )
            for j, argument in enumerate(node.arguments):
                where = f"task_nodes[{i}].arguments[{j}]"
                _check_refs(argument, i, len(graph.nodes), where)
                _check_files(argument, files, where)
        graph.order()


def media_type(name: str) -> MediaType:
    """What a file name holds, by its extension (text when it has none we know)."""
    return _EXTENSIONS.get(name.rsplit(".", 1)[-1].lower(), "text") if "." in name else "text"


def file_names(text: str) -> list[str]:
    """File names mentioned in a text, in order, once each (``example.jpg``)."""
    seen: dict[str, None] = {}
    for m in _FILE.finditer(text):
        seen.setdefault(m.group(0), None)
    return list(seen)


def _check_refs(argument: str, i: int, n: int, where: str) -> None:
    for m in NODE_REF.finditer(argument):
        k = int(m.group(1))
        if k >= n or k == i:
            what = "itself" if k == i else f"no node (the graph has {n})"
            raise InputError(f"{where}: {m.group(0)} names {what}", param="task_nodes")


def _check_files(argument: str, files: list[str], where: str) -> None:
    for name in file_names(argument):
        if name not in files:
            attached = files or "none"
            raise InputError(
                f"{where}: no attached file {name!r}; attached: {attached}", param="files"
            )


def _tool(raw: Any, i: int, where: str) -> Tool:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise InputError(f"{where}: nodes[{i}]: expected {{id, desc, input-type, output-type}}")
    types = []
    for key in ("input-type", "output-type"):
        values = raw.get(key) or []
        bad = [v for v in values if v not in MEDIA_TYPES]
        if bad:
            raise InputError(f"{where}: nodes[{i}].{key}: {bad} are not in {list(MEDIA_TYPES)}")
        types.append(tuple(values))
    return Tool(raw["id"], str(raw.get("desc", "")), types[0], types[1])
