"""The JSON schema a planning model's answer must follow: a task graph over a catalog.

Constrained decoding (a llama.cpp grammar made from this schema) means the model can only
write a graph in TaskBench's shape, naming tools of the catalog. What a schema cannot say
(``<node-i>`` naming an existing node, a link between nodes of the graph, no cycle) is
checked after, by :meth:`Catalog.check`.

The bounds keep the grammar small and the answer finite: a small model that starts a
string it cannot end would otherwise write until ``max_tokens`` and leave broken JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tierwise.orchestrate.catalog import Catalog


@dataclass(frozen=True)
class GraphBounds:
    """Most nodes, links and arguments an answer may have, and an argument's length."""

    nodes: int = 8  # TaskBench's graphs have at most 8 nodes
    links: int = 8
    arguments: int = 3
    argument_chars: int = 200


def graph_schema(catalog: Catalog, bounds: GraphBounds | None = None) -> dict[str, Any]:
    """``{"task_nodes": [{"task", "arguments"}], "task_links": [{"source", "target"}]}``,
    tasks and link ends limited to the catalog's tool names.

    Node k's arguments are texts or ``<node-i>`` for an earlier node i, so that a graph
    can name neither a node it lacks nor itself, and its references run forward (no
    cycle). A text may not start with ``<``: a small model otherwise invents references
    of its own (``<output of Image Classification>``).
    """
    b = bounds or GraphBounds()
    # A JSON string's characters, no quote or backslash: nothing to unescape.
    text = rf'^[^<"\\][^"\\]{{0,{b.argument_chars - 1}}}$'
    defs: dict[str, Any] = {
        "tool": {"type": "string", "enum": catalog.names},
        "text": {"type": "string", "pattern": text},
    }
    defs.update({f"node{k}": _node(k, b) for k in range(b.nodes)})
    # One tuple per graph size: node k's schema depends on its position.
    sizes = [_nodes(n) for n in range(1, b.nodes + 1)]
    link = _object({"source": _ref("tool"), "target": _ref("tool")})
    schema = _object(
        {
            "task_nodes": {"anyOf": sizes},
            "task_links": {"type": "array", "items": link, "maxItems": b.links},
        }
    )
    return {**schema, "$defs": defs}


def _node(k: int, b: GraphBounds) -> dict[str, Any]:
    argument: dict[str, Any] = _ref("text")
    if k > 0:
        earlier = {"type": "string", "enum": [f"<node-{i}>" for i in range(k)]}
        argument = {"anyOf": [earlier, argument]}
    arguments = {"type": "array", "items": argument, "minItems": 1, "maxItems": b.arguments}
    return _object({"task": _ref("tool"), "arguments": arguments})


def _nodes(n: int) -> dict[str, Any]:
    return {
        "type": "array",
        "prefixItems": [_ref(f"node{k}") for k in range(n)],
        "minItems": n,
        "maxItems": n,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, in this order (OpenAI's strict form)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
