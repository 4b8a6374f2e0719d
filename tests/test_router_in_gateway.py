"""The learned router as the gateway's quality predictor for chat plans, prompt by prompt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import recording_cluster as rc
from tests.test_routing import synthetic
from tierwise.routing.dataset import load_csv
from tierwise.routing.features import StaticMiniLMEncoder
from tierwise.routing.router import Router


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rc.Recording]:
    folder: Path = tmp_path_factory.mktemp("routed")
    router = Router.train(load_csv(synthetic(folder / "train.csv")), StaticMiniLMEncoder())
    router.save(folder / "router.npz")
    settings = {
        "router": {
            "path": str(folder / "router.npz"),
            "models": {"smollm2": "small", "cloud-gpt": "big"},
        }
    }
    yield from rc.recording_cluster(folder / "state", settings)


def test_easy_prompts_stay_local_and_hard_ones_go_to_the_cloud(recording: rc.Recording) -> None:
    # Dollars weigh heavily here, so only predicted quality can send a prompt to the cloud.
    thrifty = {"weights": {"usd": 1e6}}
    poem = "Write a short poem about the harbour at dawn."
    sums = "What is 44 times 17? Show the working."
    sent = len(rc.Echo.raw)
    _, ext = rc.ask(recording.plain, poem, "any", model="auto", policy=thrifty)
    assert ext["plan"] == "chat@device/smollm2", ext["router"]
    assert ext["router"]["smollm2"] >= 0.8
    assert len(rc.Echo.raw) == sent
    _, ext = rc.ask(recording.plain, sums, "any", model="auto", policy=thrifty)
    assert ext["plan"] == "chat@cloud/cloud-gpt", ext["router"]
    assert ext["router"]["smollm2"] < 0.8 <= ext["router"]["cloud-gpt"]
    assert len(rc.Echo.raw) == sent + 1


def test_a_pinned_model_is_not_routed(recording: rc.Recording) -> None:
    _, ext = rc.ask(recording.plain, "What is 44 times 17?", "any", model="smollm2")
    assert ext["plan"] == "chat@device/smollm2" and "router" not in ext
