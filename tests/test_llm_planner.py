"""The LLM planner: its prompt, its schema, its retry and refusal (a scripted answer
stands in for the model there), and real SmolLM2 planning in this process. Planning
through a cluster's gateway under a policy is in test_runs_llm.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from tierwise.bench.orchestrate_llm import RecordedAsk, predict
from tierwise.errors import ConfigError, InputError
from tierwise.models.llama_cpp_chat import LlamaCppChat
from tierwise.orchestrate.asking import LocalAsk, chat_messages, model_budget
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.examples import Example, default_examples
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.graph_schema import GraphBounds, graph_schema
from tierwise.orchestrate.llm import LLMPlanner, LLMSettings
from tierwise.orchestrate.planner import PlanRequest
from tierwise.orchestrate.planners import PLANNERS, PlannerOptions, make_planner
from tierwise.orchestrate.prompt import PromptBudget, estimate_tokens
from tierwise.orchestrate.retrieval import Retriever, TfIdf

SHARED = Path(os.environ.get("TIERWISE_DATA") or Path(__file__).parents[2] / "shared" / "data")

CAPTION = TaskGraph.from_taskbench(
    {
        "task_nodes": [
            {"task": "Image-to-Text", "arguments": ["example.jpg"]},
            {"task": "Text-to-Speech", "arguments": ["<node-0>"]},
        ],
        "task_links": [{"source": "Image-to-Text", "target": "Text-to-Speech"}],
    }
)
EXAMPLES = [
    Example("1", "chain", "Describe example.jpg and read the caption aloud.", CAPTION),
    Example(
        "2",
        "single",
        "Translate 'good morning' into French.",
        TaskGraph.from_taskbench(
            {"task_nodes": [{"task": "Translation", "arguments": ["good morning"]}]}
        ),
    ),
    Example(
        "3",
        "single",
        "Make my voice recording example.wav cleaner.",
        TaskGraph.from_taskbench({"task_nodes": [{"task": "Audio Enhancer", "arguments": ["x"]}]}),
    ),
]
REQUEST = PlanRequest("Caption example.png and then say the caption out loud.", ("example.png",))
GOOD = json.dumps(
    {
        "task_nodes": [
            {"task": "Image-to-Text", "arguments": ["example.png"]},
            {"task": "Text-to-Speech", "arguments": ["<node-0>"]},
        ],
        "task_links": [{"source": "Image-to-Text", "target": "Text-to-Speech"}],
    }
)
SELF = '{"task_nodes": [{"task": "Image-to-Text", "arguments": ["<node-0>"]}], "task_links": []}'


class Scripted:
    """An AskChat that answers from a list and keeps what it was asked."""

    def __init__(self, *answers: str, tier: str = "edge") -> None:
        self.answers = list(answers)
        self.asked: list[list[dict[str, str]]] = []
        self.tier = tier

    async def __call__(
        self, messages: list[dict[str, str]], schema: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        self.asked.append(messages)
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "tier": self.tier, "usd": 0.001}
        return self.answers.pop(0), usage


def _planner(ask: Any, **kwargs: Any) -> LLMPlanner:
    return LLMPlanner(Catalog.default(), EXAMPLES, ask, **kwargs)


# -- schema, prompt, retrieval -----------------------------------------------------------


def test_the_schema_names_only_catalog_tools_and_earlier_nodes() -> None:
    catalog = Catalog.default()
    schema = graph_schema(catalog, GraphBounds(nodes=3))
    assert schema["$defs"]["tool"]["enum"] == catalog.names
    assert len(schema["properties"]["task_nodes"]["anyOf"]) == 3
    node2 = schema["$defs"]["node2"]["properties"]["arguments"]["items"]["anyOf"][0]
    assert node2["enum"] == ["<node-0>", "<node-1>"]
    assert "node0" in json_schema_to_gbnf(json.dumps(schema))  # llama.cpp can follow it


def test_the_prompt_shows_the_tools_the_nearest_examples_and_the_request() -> None:
    planner = _planner(Scripted())
    shown = planner.similar(REQUEST)
    assert [e.id for e in shown] == ["1", "2"]  # example 3 names a tool outside the catalog
    messages = planner.messages(REQUEST, shown)
    assert (
        messages[0]["role"] == "system"
        and "Depth Estimation (image -> image)" in (messages[0]["content"])
    )
    # The most similar example stands next to the request.
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * 2 + ["user"]
    assert json.loads(messages[-2]["content"]) == CAPTION.to_taskbench()
    assert messages[-1]["content"] == f"Attached files: example.png\nRequest: {REQUEST.text}"


def test_examples_are_dropped_until_the_prompt_fits_and_a_long_request_is_refused() -> None:
    planner = _planner(Scripted())
    examples = planner.similar(REQUEST)
    whole = estimate_tokens(planner.messages(REQUEST, examples))
    tight = _planner(Scripted(), budget=PromptBudget(estimate_tokens, whole - 1))
    assert len(tight.messages(REQUEST, examples)) == len(planner.messages(REQUEST, examples)) - 2
    tiny = _planner(Scripted(), budget=PromptBudget(estimate_tokens, 50))
    with pytest.raises(InputError, match="too long to plan"):
        tiny.messages(REQUEST, examples)


def test_tf_idf_retrieval_finds_the_request_sharing_rare_words() -> None:
    retriever = Retriever(EXAMPLES)
    assert retriever.nearest("please translate this into French", 1)[0].id == "2"
    assert retriever.nearest("anything", 0) == []
    assert TfIdf(["a b", "b c"])(["b"]).shape == (1, 3)


# -- planning, retry, refusal ------------------------------------------------------------


def test_a_good_answer_is_one_try_with_its_usage() -> None:
    ask = Scripted(GOOD)
    planned = asyncio.run(_planner(ask).plan(REQUEST))
    assert planned.graph.to_taskbench() == json.loads(GOOD) and planned.tries == 1
    assert planned.usage["prompt_tokens"] == 100 and planned.usage["tiers"] == ["edge"]
    assert planned.usage["usd"] == pytest.approx(0.001)


def test_a_broken_graph_is_retried_once_with_the_problem_named() -> None:
    ask = Scripted(SELF, GOOD)
    planned = asyncio.run(_planner(ask).plan(REQUEST))
    assert planned.tries == 2 and planned.usage["completion_tokens"] == 40
    retry = ask.asked[1]
    assert retry[:-2] == ask.asked[0]
    assert retry[-2] == {"role": "assistant", "content": SELF}
    assert "<node-0> names itself" in retry[-1]["content"]


def test_broken_twice_is_refused_naming_both_problems() -> None:
    ask = Scripted('{"task_nodes": [{"task": "Image-to-Text", "argu', SELF)
    with pytest.raises(InputError) as err:
        asyncio.run(_planner(ask).plan(REQUEST))
    message = err.value.message
    assert err.value.http_status == 400 and "broken twice" in message
    assert "not whole JSON" in message and "names itself" in message


def test_a_retry_that_does_not_fit_is_refused_naming_the_first_problem() -> None:
    bare = estimate_tokens(_planner(Scripted()).messages(REQUEST, []))
    ask = Scripted("{" + "x" * 4000)
    planner = _planner(ask, budget=PromptBudget(estimate_tokens, bare + 10))
    with pytest.raises(InputError, match=r"not whole JSON.*too long to plan"):
        asyncio.run(planner.plan(REQUEST))
    assert len(ask.asked) == 1


def test_a_file_that_was_not_attached_is_a_broken_graph() -> None:
    unattached = GOOD.replace("example.png", "example.jpg")
    ask = Scripted(unattached, unattached)
    with pytest.raises(InputError, match=r"no attached file 'example\.jpg'"):
        asyncio.run(_planner(ask).plan(REQUEST))


# -- which model is asked --------------------------------------------------------------


def test_the_request_s_own_ask_is_used_over_the_planner_s() -> None:
    own, given = Scripted(SELF, SELF, tier="cloud"), Scripted(GOOD, tier="device")
    planned = asyncio.run(_planner(own).plan(PlanRequest(REQUEST.text, REQUEST.files, given)))
    assert planned.usage["tier"] == "device" and len(given.asked) == 1 and own.asked == []


def test_with_no_model_to_ask_a_plan_is_refused_saying_so() -> None:
    with pytest.raises(ConfigError, match="no chat model to ask"):
        asyncio.run(_planner(None).plan(REQUEST))


def test_the_registry_makes_the_llm_planner_from_its_options() -> None:
    assert "llm" in PLANNERS
    ask = Scripted(GOOD)
    planner = make_planner("llm", PlannerOptions(Catalog.default(), ask=ask))
    assert isinstance(planner, LLMPlanner) and planner.name == "llm"
    # the embedded example plans are retrieved from when none are given
    assert planner.similar(REQUEST)[0] in default_examples()
    assert asyncio.run(planner.plan(REQUEST)).graph.to_taskbench() == json.loads(GOOD)


# -- the bench's plumbing ----------------------------------------------------------------


def test_bench_predictions_keep_refusals_with_their_asks() -> None:
    examples = [
        Example("a", "chain", "Caption example.png and read it aloud.", CAPTION),
        Example("b", "single", "Caption example.png please.", CAPTION),
    ]
    recorded = RecordedAsk(Scripted(GOOD, SELF, SELF))
    rows, refusals = asyncio.run(predict(_planner(recorded), recorded, examples, "device"))
    assert [r.tries for r in rows] == [1, 2] and rows[0].graph is not None
    assert rows[1].graph is None and len(refusals) == 1 and "broken twice" in refusals[0]
    assert rows[1].tier == "edge" and rows[1].usd == pytest.approx(0.002)


# -- real SmolLM2 ------------------------------------------------------------------------


def test_smollm2_writes_a_graph_over_the_catalog(smollm2: LlamaCppChat) -> None:
    """Whatever the tiny model plans, the grammar keeps it to the catalog's shape."""
    planner = _planner(LocalAsk(smollm2), budget=model_budget(smollm2))
    messages = planner.messages(REQUEST, planner.similar(REQUEST))
    text, usage = asyncio.run(LocalAsk(smollm2)(messages, planner.schema))
    graph = TaskGraph.from_taskbench(json.loads(text, strict=False))
    assert {n.task for n in graph.nodes} <= set(Catalog.default().names)
    assert usage["prompt_tokens"] == len(smollm2.prompt_tokens(chat_messages(messages)))
    assert usage["tier"] == "device" and usage["finish_reason"] == "stop"


def test_smollm2_plans_a_valid_graph_for_a_photo_request(smollm2: LlamaCppChat) -> None:
    """The whole planner on the real model and the embedded examples: a graph that the
    gateway's checks accept (the planner checks it before returning it)."""
    planner = make_planner("llm", PlannerOptions(Catalog.default(), ask=LocalAsk(smollm2)))
    request = PlanRequest("What is in example.jpg? Tell me in one sentence.", ("example.jpg",))
    planned = asyncio.run(planner.plan(request))
    Catalog.default().check(planned.graph, ["example.jpg"])
    assert "example.jpg" in json.dumps(planned.graph.to_taskbench())
    assert planned.usage["tier"] == "device" and planned.usage["completion_tokens"] > 0


@pytest.mark.shared_data
def test_every_taskbench_prompt_fits_smollm2_with_examples(smollm2: LlamaCppChat) -> None:
    from tierwise.orchestrate.examples import load_examples

    folder = SHARED / "taskbench"
    assert folder.is_dir(), f"no TaskBench samples at {folder}; set TIERWISE_DATA"
    train = load_examples(folder / "train.jsonl")
    planner = LLMPlanner(Catalog.default(), train, Scripted(), budget=model_budget(smollm2))
    shown = []
    for item in load_examples(folder / "test.jsonl"):
        request = PlanRequest(item.text, tuple(file_names(item.text)))
        messages = planner.messages(request, planner.similar(request))
        shown.append((len(messages) - 2) // 2)
        assert len(smollm2.prompt_tokens(chat_messages(messages))) <= smollm2.n_ctx - 352
    assert sum(n == LLMSettings().k for n in shown) / len(shown) > 0.9
