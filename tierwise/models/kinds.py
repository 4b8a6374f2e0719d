"""Model kinds: one entry per spec ``kind``, the only place that maps a kind to its code.

Each entry says what the kind is for (its :data:`Role`), how a node builds it, and what
the gateway needs to plan for it without loading it: a chat model's context window and
prompt counting, a staged vision model's input preprocessing and class names. Models
called whole (sentence embeddings, visual question answering) need nothing more than
their role: each call runs on one node. The
gateway, the profiler and the CLI ask an entry; none of them branches on spec classes.
Heavy backends (torch, llama.cpp) are imported inside the entry's methods, only when a
process needs that kind.

Adding a kind: its spec class in :mod:`tierwise.config` (a member of ``ModelSpec``), its
adapter under ``tierwise/models/``, and one entry in :data:`KINDS`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from PIL import Image

from tierwise.config import (
    CifarNetModel,
    ClusterSpec,
    EfficientNetLiteModel,
    LlamaCppModel,
    MiniLMModel,
    ModelSpec,
    OpenAIRemoteModel,
    VqaNetModel,
)
from tierwise.errors import ConfigError, InputError
from tierwise.models.base import ChatMessage, ChatModel, StagedModel
from tierwise.models.whole import WholeModel

#: what a model is for: chat answers text; staged vision runs in stages that split plans
#: cut; embedding and vqa models are called whole (one call, one node)
Role = Literal["chat", "staged-vision", "embedding", "vqa"]
#: the roles of models called whole
WHOLE_ROLES: tuple[Role, ...] = ("embedding", "vqa")
Spec = TypeVar("Spec")


@dataclass(frozen=True)
class BuildContext:
    """What a node gives the models it builds: its CPU threads and its environment."""

    threads: int
    env: Mapping[str, str]


class ModelKind(ABC, Generic[Spec]):
    name: str
    spec_class: type[Spec]
    role: Role
    #: the catalog tools (``tierwise/defaults/tools.json``) a model of this kind serves in
    #: a plain-language run; a tool no hosted model serves is planned but not run
    tools: tuple[str, ...] = ()


class ChatKind(ModelKind[Spec]):
    role: Role = "chat"
    tools = (
        "Text Generation",
        "Conversational",
        "Summarization",
        "Translation",
        "Question Answering",
    )
    #: whether answering takes this node's compute (an emulated slow board slows it), or
    #: another machine's (a remote endpoint: its speed is its own)
    computes_here: bool = True

    @abstractmethod
    def build(self, name: str, spec: Spec, ctx: BuildContext) -> ChatModel: ...

    def context_window(self, spec: Spec) -> int | None:
        """Tokens the model holds, prompt and answer together (None: not known here)."""
        return None

    def prompt_tokenizer(self, name: str, spec: Spec) -> Any | None:
        """A light tokenizer to count prompts with in the gateway (None: there is none)."""
        return None

    def count_prompt(self, spec: Spec, messages: list[ChatMessage]) -> int | None:
        """The prompt's tokens, where counting needs no tokenizer object."""
        return None


class VisionKind(ModelKind[Spec]):
    role: Role = "staged-vision"
    tools = ("Image Classification",)
    #: the labelled photos (a folder of the shared data) its plans' accuracy is measured
    #: on by `tierwise profile`; None: no such set, so its quality stays unknown
    labelled_set: str | None = None

    @abstractmethod
    def build(self, name: str, spec: Spec, ctx: BuildContext) -> StagedModel: ...

    @abstractmethod
    def inputs(
        self, spec: Spec, size: int
    ) -> tuple[Callable[[Image.Image], np.ndarray], Callable[[], list[str]]]:
        """How a photo becomes the model's input, and its class names (no torch needed)."""

    def codecs(self, spec: Spec) -> list[Path]:
        """The learned feature codecs trained for this model (each knows its split)."""
        found: list[Path] = getattr(spec, "codecs", [])
        return found


class LlamaCppKind(ChatKind[LlamaCppModel]):
    name, spec_class = "llama-cpp", LlamaCppModel

    def build(self, name: str, spec: LlamaCppModel, ctx: BuildContext) -> ChatModel:
        from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf

        path = resolve_gguf(spec.gguf)
        return LlamaCppChat(name, path, spec.n_ctx, ctx.threads, spec.max_tokens_default)

    def context_window(self, spec: LlamaCppModel) -> int | None:
        return spec.n_ctx

    def prompt_tokenizer(self, name: str, spec: LlamaCppModel) -> Any | None:
        from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf

        return LlamaCppChat(name, resolve_gguf(spec.gguf), spec.n_ctx, 1, 1, vocab_only=True)


class OpenAIRemoteKind(ChatKind[OpenAIRemoteModel]):
    name, spec_class = "openai-remote", OpenAIRemoteModel
    computes_here = False

    def build(self, name: str, spec: OpenAIRemoteModel, ctx: BuildContext) -> ChatModel:
        from tierwise.models.openai_remote import OpenAIRemoteChat

        api_key = None
        if spec.api_key_env:
            api_key = ctx.env.get(spec.api_key_env)
            if not api_key:
                raise ConfigError(
                    f"models.{name}.api_key_env: environment variable {spec.api_key_env} is not set"
                )
        return OpenAIRemoteChat(name, spec.base_url, spec.remote_model, api_key, spec.timeout)

    def count_prompt(self, spec: OpenAIRemoteModel, messages: list[ChatMessage]) -> int | None:
        from tierwise.models.openai_tokens import count_chat_tokens

        return count_chat_tokens(spec.remote_model, messages)


class EfficientNetLiteKind(VisionKind[EfficientNetLiteModel]):
    name, spec_class = "efficientnet-lite", EfficientNetLiteModel
    labelled_set = "imagenet-samples"

    def build(self, name: str, spec: EfficientNetLiteModel, ctx: BuildContext) -> StagedModel:
        from tierwise.models.efficientnet_lite import EfficientNetLite

        return EfficientNetLite(name, spec.variant)

    def inputs(
        self, spec: EfficientNetLiteModel, size: int
    ) -> tuple[Callable[[Image.Image], np.ndarray], Callable[[], list[str]]]:
        from tierwise.models.efficientnet_lite import imagenet_labels, preprocess_image

        return functools.partial(preprocess_image, size=size), imagenet_labels


class CifarNetKind(VisionKind[CifarNetModel]):
    name, spec_class = "cifar-net", CifarNetModel

    def build(self, name: str, spec: CifarNetModel, ctx: BuildContext) -> StagedModel:
        from tierwise.models.cifar_net import CifarNet

        return CifarNet(name, spec.path)

    def inputs(
        self, spec: CifarNetModel, size: int
    ) -> tuple[Callable[[Image.Image], np.ndarray], Callable[[], list[str]]]:
        from tierwise.models import cifar_input

        return cifar_input.preprocess_image, cifar_input.labels


class WholeKind(ModelKind[Spec]):
    """A model called whole: its role says which endpoint serves it."""

    @abstractmethod
    def build(self, name: str, spec: Spec, ctx: BuildContext) -> WholeModel[Any, Any]: ...


class MiniLMKind(WholeKind[MiniLMModel]):
    name, spec_class = "minilm", MiniLMModel
    role: Role = "embedding"
    tools = ("Sentence Similarity",)

    def build(self, name: str, spec: MiniLMModel, ctx: BuildContext) -> WholeModel[Any, Any]:
        from tierwise.models.minilm import MiniLM

        return MiniLM(name)


class VqaNetKind(WholeKind[VqaNetModel]):
    name, spec_class = "vqa-net", VqaNetModel
    role: Role = "vqa"
    tools = ("Visual Question Answering",)

    def build(self, name: str, spec: VqaNetModel, ctx: BuildContext) -> WholeModel[Any, Any]:
        from tierwise.models.vqa_answerer import EasyVqaNet

        try:
            return EasyVqaNet(name, spec.path)
        except InputError as exc:
            raise ConfigError(f"models.{name}.path: {exc.message}") from exc


AnyKind = ChatKind[Any] | VisionKind[Any] | WholeKind[Any]

#: spec ``kind`` → its entry: the one registry of model kinds
KINDS: dict[str, AnyKind] = {
    k.name: k
    for k in (
        LlamaCppKind(),
        OpenAIRemoteKind(),
        EfficientNetLiteKind(),
        CifarNetKind(),
        MiniLMKind(),
        VqaNetKind(),
    )
}


def kind_of(spec: ModelSpec) -> AnyKind:
    """The entry for a model spec; every spec class config accepts has one."""
    try:
        return KINDS[spec.kind]
    except KeyError:
        raise ConfigError(
            f"model kind {spec.kind!r} has no entry in tierwise.models.kinds; kinds: "
            f"{sorted(KINDS)}"
        ) from None


def chat_kind(spec: ModelSpec) -> ChatKind[Any] | None:
    kind = kind_of(spec)
    return kind if isinstance(kind, ChatKind) else None


def vision_kind(spec: ModelSpec) -> VisionKind[Any] | None:
    kind = kind_of(spec)
    return kind if isinstance(kind, VisionKind) else None


def whole_kind(spec: ModelSpec) -> WholeKind[Any] | None:
    kind = kind_of(spec)
    return kind if isinstance(kind, WholeKind) else None


def hosted_models(spec: ClusterSpec, role: Role) -> list[str]:
    """The models of ``role`` some node of the cluster hosts, in spec order."""
    hosted = {m for n in spec.nodes for m in n.models}
    return [
        name
        for name, model in spec.models.items()
        if name in hosted and kind_of(model).role == role
    ]
