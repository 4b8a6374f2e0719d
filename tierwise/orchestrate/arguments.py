"""A graph's arguments from its tools and links: what each step reads, in TaskBench's form.

For each media type a tool reads (the catalog's order), its argument is

1. ``<node-k>``: the output of a feeding step that writes that type;
2. else an attached file of that type (``example.jpg``), shared out among the steps that
   read the type, in order;
3. else, for text, a quoted passage of the request (``'...'``), each used once, and
   failing that the request itself (a step that writes from the request needs it whole).

A feeding step none of whose outputs the tool reads is still named (a link says data
flows). Every argument is one the catalog check accepts: references point at earlier
steps, and a file is named only when it is attached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tierwise.orchestrate.catalog import Catalog, file_names, media_type
from tierwise.orchestrate.graph import NODE_REF, Link, TaskGraph, TaskNode

# A quoted passage: opened after a non-word character, closed before one; three words at
# least, so "it's" and 'example.jpg' are not passages.
_QUOTED = re.compile(r"""(?<![\w])['"“‘]([^'"“”‘’]*?\w[^'"“”‘’]*?)['"”’](?![\w])""")
_MIN_WORDS = 3


def quoted(text: str) -> list[str]:
    """Quoted passages of a request, in order, without those naming files."""
    out = []
    for m in _QUOTED.finditer(text):
        passage = m.group(1).strip()
        if len(passage.split()) >= _MIN_WORDS and not file_names(passage):
            out.append(passage)
    return out


@dataclass
class _Sources:
    """What a request offers a step beyond other steps' outputs."""

    files: dict[str, list[str]]
    passages: list[str]
    whole: str
    used_files: dict[str, int] = field(default_factory=dict)

    def file(self, kind: str) -> str | None:
        names = self.files.get(kind, [])
        if not names:
            return None
        n = self.used_files.get(kind, 0)
        self.used_files[kind] = n + 1
        return names[n % len(names)]

    def text(self) -> str:
        return self.passages.pop(0) if self.passages else self.whole


def build_graph(
    tools: Sequence[str],
    feeds: dict[int, list[int]],
    text: str,
    files: Sequence[str],
    catalog: Catalog,
) -> TaskGraph:
    """The graph of ``tools`` (in running order) where ``feeds[i]`` are the earlier steps
    that feed step i, with every argument filled from the request."""
    passages = [_literal(p, files) for p in quoted(text)]
    sources = _Sources(_by_kind(files), passages, _literal(text, files))
    nodes = []
    for i, tool in enumerate(tools):
        spec = catalog.tools.get(tool)
        reads = spec.inputs if spec is not None else ("text",)
        writes = [_writes(catalog, tools[k]) for k in feeds.get(i, [])]
        nodes.append(TaskNode(tool, _arguments(reads, feeds.get(i, []), writes, sources)))
    # TaskBench's form states each feed twice, as an argument and as a task link.
    links = tuple(Link(k, i) for i in range(len(tools)) for k in feeds.get(i, []))
    return TaskGraph(tuple(nodes), links)


def _arguments(
    reads: Sequence[str], feeders: list[int], writes: list[set[str]], sources: _Sources
) -> tuple[str, ...]:
    out: list[str] = []
    unused = list(range(len(feeders)))
    for kind in reads:
        match = next((u for u in unused if kind in writes[u]), None)
        if match is not None:
            unused.remove(match)
            out.append(f"<node-{feeders[match]}>")
        elif kind != "text":
            name = sources.file(kind)
            if name is not None:
                out.append(name)
        else:  # an attached text file is a step's first text; then quoted passages
            out.append((sources.file("text") if not out else None) or sources.text())
    out.extend(f"<node-{feeders[u]}>" for u in unused)
    return tuple(dict.fromkeys(out))


def _by_kind(files: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in files:
        out.setdefault(media_type(name), []).append(name)
    return out


def _writes(catalog: Catalog, tool: str) -> set[str]:
    spec = catalog.tools.get(tool)
    return set(spec.outputs) if spec is not None else {"text"}


def _literal(text: str, files: Sequence[str]) -> str:
    """Request text as an argument: a file name it mentions but nobody attached would make
    the argument name a missing file, and a ``<node-k>`` typed by the user would read
    another step, so both are taken out."""
    for name in file_names(text):
        if name not in files:
            text = text.replace(name, "the file")
    return NODE_REF.sub("node", text)
