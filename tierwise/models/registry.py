"""A node's models, built from the cluster spec through the model-kind table.

Which class a spec ``kind`` builds is :mod:`tierwise.models.kinds`' business; this module
adds what a node does around it: slowing models down where the node emulates a slow
board, and serving the optimized variants of its vision models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tierwise.config import ClusterSpec, NodeSpec
from tierwise.errors import ConfigError, InputError, NotFoundError
from tierwise.models.base import ChatModel, StagedModel
from tierwise.models.emulation import SlowedChatModel, SlowedStagedModel, SlowedWholeModel
from tierwise.models.kinds import BuildContext, ChatKind, Role, WholeKind, kind_of
from tierwise.models.variant_file import VariantCard
from tierwise.models.whole import Embedded, VqaAnswer, VqaQuestion, WholeModel


@dataclass
class NodeModels:
    """The models one node hosts, by name."""

    chat: dict[str, ChatModel] = field(default_factory=dict)
    staged: dict[str, StagedModel] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    #: served variant name → its card (which model it was made from, what it measured)
    variants: dict[str, VariantCard] = field(default_factory=dict)
    #: models called whole, and the role of each (which endpoint serves it)
    whole: dict[str, WholeModel[Any, Any]] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)

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

    def embedder(self, name: str) -> WholeModel[list[str], Embedded]:
        return self._whole(name, "embedding")

    def vqa_model(self, name: str) -> WholeModel[VqaQuestion, VqaAnswer]:
        return self._whole(name, "vqa")

    def _whole(self, name: str, role: Role) -> WholeModel[Any, Any]:
        if self.roles.get(name) == role:
            return self.whole[name]
        valid = [m for m, r in self.roles.items() if r == role]
        raise NotFoundError(self._unknown(name, _ROLE_NAMES[role], valid), param="model")

    def _unknown(self, name: str, what: str, valid: list[str]) -> str:
        if name in self.kinds:
            return f"model {name!r} is not a {what} model on this node; {what} models here: {valid}"
        return f"model {name!r} is not hosted on this node; {what} models here: {valid}"

    def close(self) -> None:
        models: list[ChatModel | StagedModel | WholeModel[Any, Any]] = [
            *self.chat.values(),
            *self.staged.values(),
            *self.whole.values(),
        ]
        for model in models:
            model.close()


#: how an error names the models of a role called whole
_ROLE_NAMES: dict[Role, str] = {"embedding": "sentence-embedding", "vqa": "VQA"}


def load_node_models(
    spec: ClusterSpec, node: NodeSpec, env: Mapping[str, str], threads: int
) -> NodeModels:
    """Load every model ``node`` hosts; local ones are slowed if the node emulates a slow board.

    ``threads`` is how many CPU threads llama.cpp may use (torch's are set per process)."""
    models = NodeModels()
    ctx = BuildContext(threads, env)
    try:
        for name in node.models:
            model_spec = spec.models[name]
            kind = kind_of(model_spec)
            models.kinds[name] = kind.name
            if isinstance(kind, ChatKind):
                chat = kind.build(name, model_spec, ctx)
                models.chat[name] = _slowed_chat(chat, node) if kind.computes_here else chat
            elif isinstance(kind, WholeKind):
                models.whole[name] = _slowed_whole(kind.build(name, model_spec, ctx), node)
                models.roles[name] = kind.role
            else:
                models.staged[name] = _slowed_staged(kind.build(name, model_spec, ctx), node)
                _load_variants(models, spec, name, node, threads)
    except BaseException:
        models.close()
        raise
    return models


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


def _slowed_chat(model: ChatModel, node: NodeSpec) -> ChatModel:
    return SlowedChatModel(model, node.speed_factor) if node.speed_factor < 1 else model


def _slowed_staged(model: StagedModel, node: NodeSpec) -> StagedModel:
    return SlowedStagedModel(model, node.speed_factor) if node.speed_factor < 1 else model


def _slowed_whole(model: WholeModel[Any, Any], node: NodeSpec) -> WholeModel[Any, Any]:
    return SlowedWholeModel(model, node.speed_factor) if node.speed_factor < 1 else model
