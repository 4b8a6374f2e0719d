"""The tools a cluster serves in a run, each bound to the service that runs it.

A tool is served when a model some node hosts declares it (``models/kinds.py``): chat
models write, summarize, translate, answer and converse; staged vision models classify;
MiniLM compares sentences; the easy-vqa network answers questions about a picture.
Every step is an ordinary request of its service, so it is placed, budgeted, recorded and
explained like any other, under the run's policy, with the run's id on its record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from tierwise.config import ClusterSpec
from tierwise.errors import InputError
from tierwise.gateway.chat.service import ChatService
from tierwise.gateway.keys import Caller
from tierwise.gateway.recorder import Served
from tierwise.gateway.request_options import RequestOptions
from tierwise.gateway.runs.values import Value
from tierwise.gateway.vision import VisionService
from tierwise.gateway.whole.embeddings import EmbeddingService
from tierwise.gateway.whole.vqa import VqaService
from tierwise.models.kinds import Role, hosted_models, kind_of
from tierwise.runtime import openai_schema as oa
from tierwise.runtime.whole_schema import EmbeddingsRequest, vectors_of

#: How long a chat step's answer may be, in tokens.
CHAT_STEP_TOKENS = 96


@dataclass(frozen=True)
class StepContext:
    """What every step of one run shares: who asked, under which policy, and their words."""

    caller: Caller
    options: RequestOptions
    request: str


@dataclass(frozen=True)
class StepOutput:
    value: Value
    ext: dict[str, Any]  # the step request's `tierwise` fields: plan, tiers, costs, its id


class ToolRunner(Protocol):
    async def run(self, inputs: list[Value], ctx: StepContext) -> StepOutput: ...


Prompt = Callable[[list[str], str], list[dict[str, str]]]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _generate(args: list[str], request: str) -> list[dict[str, str]]:
    facts = "\n".join(f"- {a}" for a in args)
    return _user(f"{request}\n\nUse these facts:\n{facts}\nWrite what was asked, briefly.")


def _summarize(args: list[str], request: str) -> list[dict[str, str]]:
    return _user("Summarize this in two sentences:\n\n" + "\n".join(args))


def _translate(args: list[str], request: str) -> list[dict[str, str]]:
    text, language = args[0] if args else request, args[1] if len(args) > 1 else "English"
    return _user(f"Translate into {language}:\n\n{text}")


def _answer(args: list[str], request: str) -> list[dict[str, str]]:
    context, question = (args[0], args[1]) if len(args) > 1 else (request, args[0] if args else "")
    return _user(f"{context}\n\nQuestion: {question}\nAnswer briefly.")


def _converse(args: list[str], request: str) -> list[dict[str, str]]:
    return _user("\n".join(args) or request)


def compose_prompt(args: list[str], request: str) -> list[dict[str, str]]:
    """The prompt that writes a run's answer from its steps' results."""
    results = "\n".join(args)
    return _user(
        f"{request}\n\n{results}\n\nAnswer the request in one or two sentences, using "
        "only these results."
    )


CHAT_PROMPTS: dict[str, Prompt] = {
    "Text Generation": _generate,
    "Summarization": _summarize,
    "Translation": _translate,
    "Question Answering": _answer,
    "Conversational": _converse,
}


class ChatTool:
    """A writing tool: one chat request to ``model: "auto"``, its prompt made for the tool."""

    def __init__(self, chat: ChatService, prompt: Prompt) -> None:
        self._chat = chat
        self._prompt = prompt

    async def run(self, inputs: list[Value], ctx: StepContext) -> StepOutput:
        messages = self._prompt([v.as_text() for v in inputs], ctx.request)
        body = oa.ChatCompletionRequest.model_validate(
            {"model": "auto", "messages": messages, "max_tokens": CHAT_STEP_TOKENS}
        )
        served = await self._chat.complete(ctx.caller, body, ctx.options)
        text = str(served.body["choices"][0]["message"]["content"]).strip()
        return StepOutput(Value("text", text), _ext(served))


class ClassifyTool:
    """Image classification by a staged vision model, split or not as the planner places it."""

    def __init__(self, vision: VisionService, model: str) -> None:
        self._vision = vision
        self._model = model

    async def run(self, inputs: list[Value], ctx: StepContext) -> StepOutput:
        image = next((v for v in inputs if v.kind == "image"), None)
        if image is None:
            kinds = [v.kind for v in inputs]
            raise InputError(f"Image Classification needs an image; its inputs are {kinds}")
        served = await self._vision.classify(ctx.caller, image.data, self._model, 3, ctx.options)
        top = served.body["predictions"][0]
        label = Value("label", str(top["label"]), detail=f"{top['probability']:.0%}")
        return StepOutput(label, _ext(served))


class SimilarityTool:
    """Sentence similarity: both texts embedded in one request, their cosine as text."""

    def __init__(self, embeddings: EmbeddingService, model: str) -> None:
        self._embeddings = embeddings
        self._model = model

    async def run(self, inputs: list[Value], ctx: StepContext) -> StepOutput:
        texts = [v.as_text() for v in inputs if v.kind in ("text", "label")]
        if len(texts) < 2:
            kinds = [v.kind for v in inputs]
            raise InputError(f"Sentence Similarity compares two texts; its inputs are {kinds}")
        body = EmbeddingsRequest(model=self._model, input=texts[:2], encoding_format="base64")
        served = await self._embeddings.embed(ctx.caller, body, ctx.options)
        a, b = vectors_of(served.body)
        cosine = float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
        detail = f"cosine similarity of {self._model} sentence embeddings, -1 to 1"
        return StepOutput(Value("text", f"{cosine:.2f}", detail=detail), _ext(served))


class VqaTool:
    """A question about an image, answered by a VQA model (the run's words, if no text
    input asks one). The answer is a label; its probability and the model's note on
    what it knows are its detail."""

    def __init__(self, vqa: VqaService, model: str) -> None:
        self._vqa = vqa
        self._model = model

    async def run(self, inputs: list[Value], ctx: StepContext) -> StepOutput:
        image = next((v for v in inputs if v.kind == "image"), None)
        if image is None:
            kinds = [v.kind for v in inputs]
            raise InputError(f"Visual Question Answering needs an image; its inputs are {kinds}")
        question = next((v.as_text() for v in inputs if v.kind == "text"), ctx.request)
        served = await self._vqa.answer(ctx.caller, image.data, question, self._model, ctx.options)
        body = served.body
        detail = f"{body['probability']:.0%}; {body['note']}"
        return StepOutput(Value("label", str(body["answer"]), detail=detail), _ext(served))


S = TypeVar("S")


@dataclass(frozen=True)
class WholeTools:
    """The services of models called whole, for the tools they serve."""

    embeddings: EmbeddingService
    vqa: VqaService


def served_tools(
    spec: ClusterSpec, chat: ChatService, vision: VisionService, whole: WholeTools | None = None
) -> dict[str, ToolRunner]:
    """Each tool some hosted model declares (its kind's ``tools``), bound to its runner.
    Image classification goes to the first hosted vision model that declares it, and so
    on for the tools of models called whole."""
    tools: dict[str, ToolRunner] = {}
    for name in hosted_models(spec, "chat"):
        for tool in kind_of(spec.models[name]).tools:
            if tool in CHAT_PROMPTS:
                tools.setdefault(tool, ChatTool(chat, CHAT_PROMPTS[tool]))
    for name in hosted_models(spec, "staged-vision"):
        if "Image Classification" in kind_of(spec.models[name]).tools:
            tools.setdefault("Image Classification", ClassifyTool(vision, name))
    if whole is not None:
        _bind(tools, spec, "embedding", "Sentence Similarity", whole.embeddings, SimilarityTool)
        _bind(tools, spec, "vqa", "Visual Question Answering", whole.vqa, VqaTool)
    return tools


def _bind(
    tools: dict[str, ToolRunner],
    spec: ClusterSpec,
    role: Role,
    tool: str,
    service: S,
    runner: Callable[[S, str], ToolRunner],
) -> None:
    """``tool`` runs on the first hosted model of ``role`` whose kind declares it."""
    for name in hosted_models(spec, role):
        if tool in kind_of(spec.models[name]).tools:
            tools.setdefault(tool, runner(service, name))


def _ext(served: Served) -> dict[str, Any]:
    ext: dict[str, Any] = served.body["tierwise"]
    return ext
