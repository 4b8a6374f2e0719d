"""The learned planner on tierwise's own example plans: trains, plans valid graphs fast,
saves and loads without torch, refuses a bad file; the parts it is made of; the registry;
the command line."""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierwise.cli import app
from tierwise.errors import InputError
from tierwise.orchestrate import learned, selection
from tierwise.orchestrate.arguments import build_graph, quoted
from tierwise.orchestrate.catalog import Catalog, file_names
from tierwise.orchestrate.embedding import Neighbours
from tierwise.orchestrate.examples import _kind, default_examples
from tierwise.orchestrate.graph import TaskGraph
from tierwise.orchestrate.learned import Design, LearnedModel, LearnedPlanner, choose_tools
from tierwise.orchestrate.links import best_path, parents
from tierwise.orchestrate.nearest import NearestPlanner
from tierwise.orchestrate.planner import Planner, PlanRequest
from tierwise.orchestrate.planners import PLANNERS, PlannerOptions, make_planner
from tierwise.orchestrate.selection import BASE_LINKS, Grid, train_planner

CATALOG = Catalog.default()
DEMO = "What is in example.jpg? Tell me in one sentence."
REQUESTS = [
    (DEMO, ("example.jpg",)),
    ("Translate 'See you at the station at noon.' into French.", ()),
    ("Summarize report.txt and then translate the summary into German.", ("report.txt",)),
    ("Can you chat with me about growing tomatoes?", ()),
    ("Look at car.jpg and tell me: 'What colour is the car?'", ("car.jpg",)),
    ("Are 'a big house' and 'a large home' close in meaning?", ()),
]
runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def planner() -> LearnedPlanner:
    made = make_planner("learned", PlannerOptions(CATALOG))  # trains on the embedded plans
    assert isinstance(made, LearnedPlanner)
    return made


def _plan(planner: Planner, text: str, files: tuple[str, ...]) -> TaskGraph:
    return asyncio.run(planner.plan(PlanRequest(text, files))).graph


def test_the_embedded_example_plans_parse_and_every_graph_is_valid() -> None:
    examples = default_examples()
    assert 50 <= len(examples) <= 80
    assert {e.kind for e in examples} == {"single", "chain", "dag"}
    for e in examples:
        CATALOG.check(e.graph, file_names(e.text))
        assert _kind(e.graph) == e.kind, e.id
    served = {"Image Classification", "Visual Question Answering", "Text Generation",
              "Conversational", "Summarization", "Translation", "Question Answering",
              "Sentence Similarity"}  # fmt: skip
    tools = [n.task for e in examples for n in e.graph.nodes]
    assert sum(t in served for t in tools) / len(tools) > 0.8
    demo = next(e for e in examples if e.text == DEMO)
    assert [n.task for n in demo.graph.nodes] == ["Image Classification", "Text Generation"]


def test_the_default_planner_plans_valid_graphs_in_milliseconds(planner: LearnedPlanner) -> None:
    for text, files in REQUESTS:
        graph = _plan(planner, text, files)
        CATALOG.check(graph, list(files))
    graph = _plan(planner, DEMO, ("example.jpg",))
    assert graph.to_taskbench()["task_nodes"] == [
        {"task": "Image Classification", "arguments": ["example.jpg"]},
        {"task": "Text Generation", "arguments": ["<node-0>"]},
    ]
    times = []
    for text, files in REQUESTS * 5:
        started = time.perf_counter()
        planner.plan_now(PlanRequest(text, files))
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.05


def test_a_file_the_text_names_but_nobody_attached_is_never_an_argument(
    planner: LearnedPlanner,
) -> None:
    graph = _plan(planner, DEMO, ())
    CATALOG.check(graph, [])
    assert "example.jpg" not in str(graph.to_taskbench())


def test_saved_and_loaded_it_plans_the_same_without_torch(
    planner: LearnedPlanner, tmp_path: Path
) -> None:
    path = tmp_path / "planner.npz"
    planner.model.save(path)
    loaded = LearnedPlanner.load(path)
    for text, files in REQUESTS:
        assert _plan(loaded, text, files) == _plan(planner, text, files)
    assert loaded.model.design == planner.model.design
    assert loaded.model.info["cv"] == planner.model.info["cv"]
    code = (
        "import sys; from pathlib import Path; from tierwise.orchestrate.learned import "
        "LearnedPlanner; from tierwise.orchestrate.planner import PlanRequest; "
        f"p = LearnedPlanner.load(Path({str(path)!r})); "
        f"print(p.plan_now(PlanRequest({DEMO!r}, ('example.jpg',))).graph.nodes[0].task); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    ).stdout.split("\n")  # fmt: skip
    assert out[:2] == ["Image Classification", "False"]


def test_a_bad_planner_file_is_refused_by_name(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match=r"junk\.npz"):
        LearnedPlanner.load(junk)
    with pytest.raises(InputError, match="tierwise planner train"):
        LearnedPlanner.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.frombuffer(b'{"format": "tierwise-router/1"}', np.uint8))
    with pytest.raises(InputError, match="tierwise-router/1"):
        LearnedPlanner.load(other)


def test_training_picks_the_design_by_cross_validation_and_records_it() -> None:
    grid = Grid(
        designs=(Design("words", 0.0, 0.3), Design("cues+words", 3.0, 0.3)),
        thresholds=(0.25, 0.5),
        link_sets=(BASE_LINKS,),
        decoders=("chain", "breaks"),
    )
    model = train_planner(default_examples(), CATALOG, k=3, grid=grid)
    tools_rows = [r for r in model.info["cv"] if r["stage"] == "tools"]
    assert len(tools_rows) == 4  # 2 designs x 2 thresholds
    best = max(tools_rows, key=lambda r: r["node_f1"])["design"]
    assert (model.design.features, model.design.threshold) == (
        best["features"],
        best["threshold"],
    )
    structure = [r for r in model.info["cv"] if r["stage"] == "structure"]
    assert model.design.decoder == max(structure, key=lambda r: r["edge_f1"])["design"]["decoder"]
    assert model.info["folds"] == 3 and model.info["examples"] == len(default_examples())


def test_training_refuses_too_few_examples_or_no_known_tool() -> None:
    with pytest.raises(InputError, match="need at least 10"):
        train_planner(default_examples()[:4], CATALOG)
    odd = Catalog.parse({"nodes": [{"id": "Juggling", "input-type": [], "output-type": []}]}, "x")
    with pytest.raises(InputError, match="no example uses a tool"):
        train_planner(default_examples(), odd)


def test_the_best_path_is_the_exact_best_order() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 4, 6):
        scores = rng.normal(size=(n, n))
        np.fill_diagonal(scores, -1e9)
        for force in (True, False):
            gain = scores if force else np.maximum(scores, 0)

            def total(order: tuple[int, ...], gain: np.ndarray = gain) -> float:
                return float(sum(gain[a, b] for a, b in itertools.pairwise(order)))

            best = max(total(p) for p in itertools.permutations(range(n)))
            path = best_path(scores, force)
            assert sorted(path) == list(range(n))
            assert total(tuple(path)) == pytest.approx(best)


def test_parents_link_consecutive_steps_and_fan_in_a_dangling_branch() -> None:
    scores = np.array([[-9.0, -1.0, 2.0], [-9.0, -9.0, 1.0], [-9.0, -9.0, -9.0]])
    assert parents([0, 1, 2], scores, force=True, fan_in=False) == {0: [], 1: [0], 2: [1]}
    assert parents([0, 1, 2], scores, force=False, fan_in=False) == {0: [], 1: [], 2: [1]}
    assert parents([0, 1, 2], scores, force=False, fan_in=True) == {0: [], 1: [], 2: [1, 0]}


def test_choose_tools_keeps_at_least_the_likeliest() -> None:
    assert choose_tools(np.array([0.1, 0.3, 0.2]), 0.5) == [1]
    assert choose_tools(np.array([0.9, 0.3, 0.6]), 0.5) == [0, 2]


def test_arguments_come_from_feeders_files_and_quoted_passages() -> None:
    assert quoted("Say 'hello there my friend' about 'a.jpg' and it's 'ok'") == [
        "hello there my friend"
    ]
    graph = build_graph(
        ["Image Classification", "Visual Question Answering", "Question Answering"],
        {1: [], 2: [0]},
        "Look at cat.jpg: 'What is the cat doing now?' Also <node-5> here.",
        ["cat.jpg"],
        CATALOG,
    )
    assert [n.arguments for n in graph.nodes] == [
        ("cat.jpg",),
        ("cat.jpg", "What is the cat doing now?"),
        ("<node-0>", "Look at cat.jpg: 'What is the cat doing now?' Also node here."),
    ]
    CATALOG.check(graph, ["cat.jpg"])


def test_the_registry_makes_planners_by_name_and_names_the_valid_ones() -> None:
    assert {"learned", "nearest"} <= set(PLANNERS)
    with pytest.raises(InputError, match=r"unknown planner 'oracle'.*'learned'.*'nearest'"):
        make_planner("oracle", PlannerOptions(CATALOG))
    nearest = make_planner("nearest", PlannerOptions(CATALOG))
    assert isinstance(nearest, NearestPlanner)
    for text, files in REQUESTS:
        CATALOG.check(_plan(nearest, text, files), list(files))


def test_cli_planner_train_and_plan(tmp_path: Path, planner: LearnedPlanner) -> None:
    path = tmp_path / "planner.npz"
    planner.model.save(path)
    result = runner.invoke(app, ["planner", "plan", DEMO, "--planner", str(path)])
    assert result.exit_code == 0, result.output
    assert "Image Classification → Text Generation" in result.output
    result = runner.invoke(app, ["planner", "plan", DEMO, "--planner", str(tmp_path / "no")])
    assert result.exit_code == 1 and "tierwise planner train" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    result = runner.invoke(app, ["planner", "train", "--data", str(bad), "--out", str(path)])
    assert result.exit_code == 1 and "line 1" in result.output


def test_a_saved_model_keeps_what_it_learned_from(planner: LearnedPlanner, tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    planner.model.save(path)
    model = LearnedModel.load(path)
    assert model.info["trained_on"] == "the embedded example plans"
    assert model.tools == planner.model.tools


def _fake_vectors(texts: list[str] | tuple[str, ...], remember: bool = True) -> np.ndarray:
    """A stand-in for MiniLM: unit vectors from the words (same text, same vector)."""
    out = np.zeros((len(texts), 16), np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, sum(map(ord, word)) % 16] += 1.0
    norms: np.ndarray = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-6)


def test_nearest_requests_lend_their_tools_but_never_to_themselves() -> None:
    vectors = np.eye(3, dtype=np.float32)
    labels = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    near = Neighbours(vectors, labels, embed_weight=0.0, knn_weight=2.0, k=1)
    query = np.array([[0.9, 0.1, 0.0]], np.float32)
    np.testing.assert_allclose(near.knn(query), [[1.0, 0.0]])  # request 0's tools
    # as training rows, each request's nearest is another one
    own = near.knn(vectors, [0, 1, 2])
    assert not np.allclose(own, labels)
    np.testing.assert_allclose(near.transform(query), [[2.0, 0.0]])
    both = Neighbours(vectors, labels, embed_weight=3.0, knn_weight=1.0, k=2)
    assert both.width == 5 and both.transform(query).shape == (1, 5)
    np.testing.assert_allclose(both.transform(query)[0, :3], query[0] * 3.0)


def test_a_minilm_design_trains_saves_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "embed", _fake_vectors)
    monkeypatch.setattr(learned, "embed", _fake_vectors)
    monkeypatch.setattr(selection, "EMBED_MIN_EXAMPLES", 10)
    grid = Grid(
        designs=(Design("cues+words", 3.0, 0.3, embed=1.0, knn=3.0),),
        thresholds=(0.3,),
        link_sets=(BASE_LINKS,),
        decoders=("chain",),
    )
    model = train_planner(default_examples(), CATALOG, k=3, grid=grid)
    assert model.neighbours is not None and model.design.knn == 3.0
    assert model.neighbours.vectors.shape == (len(default_examples()), 16)
    path = tmp_path / "minilm.npz"
    model.save(path)
    loaded = LearnedPlanner.load(path)
    assert loaded.model.neighbours is not None
    np.testing.assert_array_equal(loaded.model.neighbours.labels, model.neighbours.labels)
    for text, files in REQUESTS:
        assert _plan(loaded, text, files) == _plan(LearnedPlanner(model), text, files)


def test_few_examples_never_try_the_minilm_designs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(texts: list[str], remember: bool = True) -> np.ndarray:
        raise AssertionError("MiniLM was run")

    monkeypatch.setattr(selection, "embed", refuse)
    grid = Grid(
        designs=(Design("cues+words", 3.0, 0.3), Design("cues+words", 3.0, 0.3, knn=3.0)),
        thresholds=(0.3,),
        link_sets=(BASE_LINKS,),
        decoders=("chain",),
    )
    model = train_planner(default_examples(), CATALOG, k=3, grid=grid)  # 60 < 100 examples
    assert model.neighbours is None and not model.design.uses_minilm
    assert all(r["design"]["knn"] == 0.0 for r in model.info["cv"])
