"""The messages a planning model reads: the tools, a few solved examples, the request.

Solved examples are earlier turns of the conversation (the request as the user's turn,
its graph as the assistant's), the form in which a small chat model copies a format
best. The answer format itself is also enforced by the decoding grammar; the prompt
says what the parts mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import Example
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.planner import PlanRequest

Message = dict[str, str]
CountTokens = Callable[[list[Message]], int]

#: Room for the answer: TaskBench's largest graphs (8 nodes) take 320 SmolLM2 tokens.
ANSWER_TOKENS = 352
#: SmolLM2's window: the smallest chat model a default cluster serves.
SMALL_WINDOW = 2048

_RULES = (
    'Answer with a plan as JSON: {"task_nodes": [{"task": tool, "arguments": [...]}], '
    '"task_links": [{"source": tool, "target": tool}]}. An argument is an attached file '
    'name, a text taken from the request, or "<node-i>": the output of node i (the first '
    "node is node 0). Use only the tools the request needs. Link each node to every node "
    "that reads its output."
)


@dataclass(frozen=True)
class PromptBudget:
    """How many prompt tokens the planning model takes (its window less the answer's
    room), and how to count a conversation's tokens."""

    count: CountTokens
    limit: int


def estimate_tokens(messages: list[Message]) -> int:
    """A conservative count without the model's tokenizer: two and a half characters a
    token (SmolLM2 reads 2.8 to 4.1 on these prompts, JSON answers the fewest) and eight
    per message for the chat template's markers."""
    return sum(len(m["content"]) * 2 // 5 + 8 for m in messages)


DEFAULT_BUDGET = PromptBudget(estimate_tokens, SMALL_WINDOW - ANSWER_TOKENS)


def system_message(catalog: Catalog) -> Message:
    lines = ["You plan which tools answer a request. The tools (inputs -> outputs: use):"]
    for tool in catalog.tools.values():
        ins = ", ".join(tool.inputs) or "nothing"
        outs = ", ".join(tool.outputs) or "a score"
        lines.append(f"- {tool.name} ({ins} -> {outs}): {tool.description}")
    lines.append(_RULES)
    return {"role": "system", "content": "\n".join(lines)}


def request_message(request: PlanRequest) -> Message:
    files = ", ".join(request.files) or "none"
    return {"role": "user", "content": f"Attached files: {files}\nRequest: {request.text}"}


def answer_text(graph: TaskGraph) -> str:
    """A graph written the way the model is asked to write one."""
    return json.dumps(graph.to_taskbench(), ensure_ascii=False)


def example_turns(example: Example, files: Sequence[str]) -> list[Message]:
    return [
        request_message(PlanRequest(example.text, tuple(files))),
        {"role": "assistant", "content": answer_text(example.graph)},
    ]


def follow_up(answer: str, problem: str) -> list[Message]:
    """The broken answer and what was wrong with it: the turns of a retry."""
    return [
        {"role": "assistant", "content": answer},
        {
            "role": "user",
            "content": f"That plan cannot run: {problem}. Write the whole plan again, corrected.",
        },
    ]
