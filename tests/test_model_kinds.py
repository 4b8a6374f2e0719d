"""The model-kind table: one entry per spec kind, asked by role instead of by class."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from tierwise.config import ModelSpec, default_spec, parse_spec
from tierwise.datasets.photos import photo_set
from tierwise.errors import ConfigError
from tierwise.models.base import ChatMessage
from tierwise.models.kinds import (
    KINDS,
    BuildContext,
    chat_kind,
    hosted_models,
    kind_of,
    vision_kind,
    whole_kind,
)


def test_every_spec_class_config_accepts_has_one_entry() -> None:
    spec_classes = set(get_args(get_args(ModelSpec)[0]))
    assert {k.spec_class for k in KINDS.values()} == spec_classes
    for name, kind in KINDS.items():  # each entry is keyed by its spec class's own kind
        assert get_args(kind.spec_class.model_fields["kind"].annotation) == (name,)


def test_roles_decide_which_models_are_chat_and_which_are_vision() -> None:
    spec = default_spec()
    assert hosted_models(spec, "chat") == ["smollm2"]
    assert hosted_models(spec, "staged-vision") == [
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
    ]
    assert chat_kind(spec.models["efficientnet-lite0"]) is None
    assert vision_kind(spec.models["smollm2"]) is None
    assert hosted_models(spec, "embedding") == ["minilm"]
    assert hosted_models(spec, "vqa") == []  # its file does not exist on a fresh machine


def test_models_called_whole_declare_their_tools_and_say_what_is_missing(tmp_path: Path) -> None:
    spec = default_spec()
    minilm = whole_kind(spec.models["minilm"])
    assert minilm is not None and minilm.tools == ("Sentence Similarity",)
    raw = _with_model("vqa", {"kind": "vqa-net", "path": str(tmp_path / "none.npz")})
    vqa_spec = parse_spec(raw, "test").models["vqa"]
    vqa = whole_kind(vqa_spec)
    assert vqa is not None and vqa.role == "vqa" and vqa.tools == ("Visual Question Answering",)
    with pytest.raises(ConfigError, match=r"models.vqa.path: no file at .*tierwise train vqa"):
        vqa.build("vqa", vqa_spec, BuildContext(1, {}))


def test_a_model_no_node_hosts_is_not_offered() -> None:
    raw = default_spec().model_dump(mode="json")
    for node in raw["nodes"]:
        node["models"] = [m for m in node["models"] if m != "efficientnet-lite2"]
    spec = parse_spec(raw, "test")
    assert "efficientnet-lite2" not in hosted_models(spec, "staged-vision")


def test_chat_kinds_know_their_window_and_how_to_count_a_prompt() -> None:
    llama = default_spec().models["smollm2"]
    local = chat_kind(llama)
    assert local is not None and local.context_window(llama) == 2048
    remote_spec = {"kind": "openai-remote", "base_url": "http://x", "remote_model": "gpt-4"}
    gpt = parse_spec(_with_model("gpt", remote_spec), "test").models["gpt"]
    remote = chat_kind(gpt)
    assert remote is not None and kind_of(gpt).role == "chat"
    counted = remote.count_prompt(gpt, [ChatMessage("user", "Hello there!")])
    assert counted is not None and 3 < counted < 20  # tiktoken's count, not a length guess
    assert remote.context_window(gpt) is None


@pytest.mark.parametrize(("model", "size"), [("efficientnet-lite0", 224)])
def test_vision_kinds_turn_a_photo_into_the_models_input(model: str, size: int) -> None:
    spec = default_spec().models[model]
    kind = vision_kind(spec)
    assert kind is not None
    preprocess, labels = kind.inputs(spec, size)
    _, photo = photo_set(1)[0]
    x = preprocess(photo)
    assert x.shape == (1, 3, size, size) and x.dtype == np.float32
    assert len(labels()) == 1000
    assert kind.codecs(spec) == []


def _with_model(name: str, model: dict[str, object]) -> dict[str, object]:
    raw = default_spec().model_dump(mode="json")
    raw["models"][name] = model
    raw["nodes"][-1]["models"].append(name)
    raw.setdefault("prices", {}).setdefault("tokens", {})[name] = {
        "input": 1.0,
        "output": 2.0,
        "source": "test",
    }
    return raw
