"""Builds a node's models from the cluster spec: the one place that maps ``kind`` to a class.

Heavy backends (torch, llama.cpp) are imported inside their own modules, only when
a node actually hosts such a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tierwise.config import (
    CifarNetModel,
    ClusterSpec,
    EfficientNetLiteModel,
    LlamaCppModel,
    NodeSpec,
    OpenAIRemoteModel,
)
from tierwise.errors import ConfigError, InputError, NotFoundError
from tierwise.models.base import ChatModel, StagedModel
from tierwise.models.emulation import SlowedChatModel, SlowedStagedModel
from tierwise.models.variant_file import VariantCard


@dataclass
class NodeModels:
    """The models one node hosts, by name."""

    chat: dict[str, ChatModel] = field(default_factory=dict)
    staged: dict[str, StagedModel] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    #: served variant name → its card (which model it was made from, what it measured)
    variants: dict[str, VariantCard] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.kinds)

    def chat_model(self, name: str) -> ChatModel:
        if name in self.chat:
            return self.chat[name]
        raise NotFoundError(self._unknown(name, "chat", list(self.chat)), param="model")

    def staged_model(self, name: str) -> StagedModel:
        if name in self.staged:
            return self.staged[name]
        raise NotFoundError(self._unknown(name, "staged vision", list(self.staged)), param="model")

    def _unknown(self, name: str, what: str, valid: list[str]) -> str:
        if name in self.kinds:
            return f"model {name!r} is not a {what} model on this node; {what} models here: {valid}"
        return f"model {name!r} is not hosted on this node; {what} models here: {valid}"

    def close(self) -> None:
        models: list[ChatModel | StagedModel] = [*self.chat.values(), *self.staged.values()]
        for model in models:
            model.close()


def load_node_models(
    spec: ClusterSpec, node: NodeSpec, env: Mapping[str, str], threads: int
) -> NodeModels:
    """Load every model ``node`` hosts; local ones are slowed if the node emulates a slow board.

    ``threads`` is how many CPU threads llama.cpp may use (torch's are set per process)."""
    models = NodeModels()
    try:
        for name in node.models:
            model_spec = spec.models[name]
            models.kinds[name] = model_spec.kind
            if isinstance(model_spec, LlamaCppModel):
                models.chat[name] = _slowed_chat(_llama(name, model_spec, threads), node)
            elif isinstance(model_spec, EfficientNetLiteModel):
                models.staged[name] = _slowed_staged(_efficientnet(name, model_spec), node)
            elif isinstance(model_spec, CifarNetModel):
                models.staged[name] = _slowed_staged(_cifar(name, model_spec), node)
            if isinstance(model_spec, EfficientNetLiteModel | CifarNetModel):
                _load_variants(models, spec, name, node, threads)
            elif isinstance(model_spec, OpenAIRemoteModel):
                models.chat[name] = _remote(name, model_spec, env)
    except BaseException:
        models.close()
        raise
    return models


def _llama(name: str, spec: LlamaCppModel, threads: int) -> ChatModel:
    from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf

    return LlamaCppChat(name, resolve_gguf(spec.gguf), spec.n_ctx, threads, spec.max_tokens_default)


def _efficientnet(name: str, spec: EfficientNetLiteModel) -> StagedModel:
    from tierwise.models.efficientnet_lite import EfficientNetLite

    return EfficientNetLite(name, spec.variant)


def _cifar(name: str, spec: CifarNetModel) -> StagedModel:
    from tierwise.models.cifar_net import CifarNet

    return CifarNet(name, spec.path)


def _load_variants(
    models: NodeModels, spec: ClusterSpec, base: str, node: NodeSpec, threads: int
) -> None:
    """Serve every variant of ``base`` that `tierwise optimize` wrote (no spec edit needed)."""
    from tierwise.models.variant_file import find_variants, served_name

    if spec.variants_dir is None:
        return
    try:
        found = find_variants(spec.variants_dir, base)
    except InputError as exc:
        raise ConfigError(f"variants_dir: {exc}") from exc
    if not found:
        return
    from tierwise.models.onnx_variant import OnnxVariant

    for folder, card in found:
        name = served_name(card)
        try:
            variant = OnnxVariant(name, folder, threads)
        except InputError as exc:
            raise ConfigError(f"variants_dir: {exc}") from exc
        models.staged[name] = _slowed_staged(variant, node)
        models.kinds[name] = "onnx-variant"
        models.variants[name] = card


def _remote(name: str, spec: OpenAIRemoteModel, env: Mapping[str, str]) -> ChatModel:
    from tierwise.models.openai_remote import OpenAIRemoteChat

    api_key = None
    if spec.api_key_env:
        api_key = env.get(spec.api_key_env)
        if not api_key:
            raise ConfigError(
                f"models.{name}.api_key_env: environment variable {spec.api_key_env} is not set"
            )
    return OpenAIRemoteChat(name, spec.base_url, spec.remote_model, api_key, spec.timeout)


def _slowed_chat(model: ChatModel, node: NodeSpec) -> ChatModel:
    return SlowedChatModel(model, node.speed_factor) if node.speed_factor < 1 else model


def _slowed_staged(model: StagedModel, node: NodeSpec) -> StagedModel:
    return SlowedStagedModel(model, node.speed_factor) if node.speed_factor < 1 else model
