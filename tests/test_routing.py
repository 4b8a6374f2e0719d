"""The learned router: data loading, curve arithmetic, policies, training and storage."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tierwise.cli import app
from tierwise.config import Policy
from tierwise.errors import ConfigError, InputError
from tierwise.routing import metrics
from tierwise.routing.answers import answer_key
from tierwise.routing.choice import choose
from tierwise.routing.dataset import load_csv
from tierwise.routing.features import StaticMiniLMEncoder, Template, featurize
from tierwise.routing.predictor import QualityPredictor
from tierwise.routing.replay import curves
from tierwise.routing.router import Router, out_of_fold

SHARED = Path(os.environ.get("TIERWISE_DATA") or Path(__file__).parents[2] / "shared" / "data")
MATH = [f"What is {a} times {b}? Show the working." for a in range(13, 33) for b in (7, 19)]
POEMS = [
    f"Write a short poem about the {w}."
    for w in (
        "sea",
        "moon",
        "forest",
        "rain",
        "city",
        "winter",
        "summer",
        "river",
        "mountain",
        "desert",
        "garden",
        "night",
        "morning",
        "wind",
        "snow",
        "island",
        "harbour",
        "meadow",
        "storm",
        "sky",
        "lake",
        "valley",
        "autumn",
        "spring",
        "bridge",
        "train",
        "lighthouse",
        "orchard",
        "cliff",
        "village",
        "market",
        "candle",
        "clock",
        "library",
        "kitchen",
        "window",
        "road",
        "field",
        "cloud",
        "star",
    )
]


def write_csv(
    path: Path, prompts: list[str], correct: dict[str, list[str]], cost: dict[str, float]
) -> Path:
    models = list(correct)
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(
            [
                "sample_id",
                "prompt",
                *models,
                *(f"{m}|model_response" for m in models),
                *(f"{m}|total_cost" for m in models),
            ]
        )
        for i, prompt in enumerate(prompts):
            w.writerow(
                [
                    f"s{i}",
                    repr([prompt]),
                    *(correct[m][i] for m in models),
                    *(repr(["A"]) for _ in models),
                    *(cost[m] for m in models),
                ]
            )
    return path


def synthetic(path: Path) -> Path:
    """A cheap model that writes poems but cannot multiply; a dear one that does both."""
    rng = np.random.default_rng(1)
    prompts = MATH + POEMS
    small = ["0"] * len(MATH) + [str(int(rng.random() < 0.95)) for _ in POEMS]
    big = [str(int(rng.random() < 0.95)) for _ in prompts]
    return write_csv(path, prompts, {"small": small, "big": big}, {"small": 1e-4, "big": 1e-3})


# -- data -------------------------------------------------------------------------------


def test_load_csv_finds_models_and_reads_list_prompts(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        ["hello", "bye"],
        {"a": ["1", ""], "b": ["0", "1"]},
        {"a": 0.5, "b": 1.0},
    )
    data = load_csv(path)
    assert data.models == ["a", "b"]
    assert data.prompts == ["hello", "bye"]
    assert np.isnan(data.correct[1, 0]) and data.correct[1, 1] == 1.0
    assert data.cost.tolist() == [[0.5, 1.0], [0.5, 1.0]]


def test_load_csv_names_the_missing_cost_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,m1\nhi,1\n")
    with pytest.raises(InputError, match=r"m1\|total_cost"):
        load_csv(path)


def test_load_csv_names_row_and_column_of_a_bad_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,m1,m1|total_cost\nhi,yes,0.1\n")
    with pytest.raises(InputError, match=r":2 column 'm1'.*'yes'"):
        load_csv(path)


def test_template_cuts_the_shared_few_shot_prefix_and_suffix() -> None:
    shots = "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA: 4\n\n"
    tail = "\nAnswer with one letter only.\nAnswer:"
    prompts = [f"{shots}Q: {q}{tail}" for q in ("Why is the sky blue?", "What is a cell?")]
    template = Template.learn(prompts)
    assert [template.cut(p) for p in prompts] == ["Q: Why is the sky blue?", "Q: What is a cell?"]
    assert template.cut("unrelated") == "unrelated"


# -- curves and policies ----------------------------------------------------------------------


def test_upper_hull_drops_dominated_and_concave_points() -> None:
    hull = metrics.upper_hull([(1, 0.5), (2, 0.55), (3, 0.9), (4, 0.85), (5, 0.95)])
    assert hull == [(1, 0.5), (3, 0.9), (5, 0.95)]
    assert metrics.accuracy_at(hull, 2) == pytest.approx(0.7)
    assert curves.cost_to_reach(hull, 0.7) == pytest.approx(2.0)
    assert curves.cost_to_reach(hull, 0.99) == float("inf")
    assert np.isnan(metrics.accuracy_at(hull, 0.5))


def test_aiq_is_the_mean_accuracy_over_the_cost_range() -> None:
    assert metrics.aiq([(0.0, 0.8), (1.0, 0.8)], 0.0, 1.0) == pytest.approx(0.8)
    assert metrics.aiq([(0.0, 0.0), (1.0, 1.0)], 0.0, 1.0) == pytest.approx(0.5)


def test_oracle_sends_each_prompt_to_its_cheapest_right_model() -> None:
    correct = np.array([[1, 1], [0, 1], [0, 0]], float)
    cost = np.array([[1, 10], [1, 10], [1, 10]], float)
    assert curves.oracle_point(correct, cost) == (pytest.approx(4.0), pytest.approx(2 / 3))


def test_policy_min_quality_max_usd_and_weight() -> None:
    p, usd = np.array([0.6, 0.85, 0.95]), np.array([0.1, 1.0, 10.0])
    assert choose(p, usd, Policy(min_quality=0.8)) == 1
    assert choose(p, usd, Policy(min_quality=0.99)) == 2  # none reaches it: best predicted
    assert choose(p, usd, Policy(max_usd=0.5)) == 0
    assert choose(p, usd, Policy(), usd_per_point=1e3) == 2
    assert choose(p, usd, Policy(), usd_per_point=1e-3) == 0


class _FixedTable(QualityPredictor):
    """The smallest predictor: the same chances for every prompt."""

    def __init__(self, p: list[float], usd: list[float]) -> None:
        self.models = [f"m{j}" for j in range(len(p))]
        self.usd = np.array(usd)
        self._p = np.array(p)

    def predict(self, prompts: list[str]) -> np.ndarray:
        return np.repeat(self._p[None, :], len(prompts), axis=0)


def test_any_quality_predictor_chooses_under_the_request_policy() -> None:
    table = _FixedTable([0.6, 0.85, 0.95], [0.1, 1.0, 10.0])
    choice = table.decide("anything", Policy(min_quality=0.8))
    assert choice.model == "m1" and choice.p_correct["m2"] == pytest.approx(0.95)
    assert choice.expected_usd == {"m0": 0.1, "m1": 1.0, "m2": 10.0}
    assert table.decide("anything", usd_per_point=1e3).model == "m2"
    assert table.decide("anything").model == "m0"  # the default weight: quality per dollar


def test_unknown_learner_and_encoder_names_are_input_errors() -> None:
    from tierwise.routing.features import make_encoder
    from tierwise.routing.learners import make

    with pytest.raises(InputError, match=r"unknown learner 'svm'; expected one of .*'knn'"):
        make("svm", {})
    with pytest.raises(InputError, match=r"unknown encoder 'bert'; expected one of .*'minilm'"):
        make_encoder("bert")


def test_nothing_the_gateway_runs_imports_the_replayed_policies() -> None:
    import ast

    live = Path(__file__).parents[1] / "tierwise" / "routing"
    for module in live.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                assert not any("replay" in n for n in names), (module.name, names)


def test_answer_key_matches_choices_however_written() -> None:
    assert answer_key("B\n") == answer_key("(b) because") == answer_key(" B. 7") == "B"
    assert answer_key("B\n\nThe reason is heat") == "B"
    assert answer_key("Because of gravity") == "because of gravity"
    assert answer_key("A magic square is a grid") == "a magic square is a grid"


# -- training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> StaticMiniLMEncoder:
    return StaticMiniLMEncoder()


def test_token_vectors_are_made_on_first_use_and_shared_through_the_cache(
    tmp_path: Path,
) -> None:
    first = StaticMiniLMEncoder(cache_dir=tmp_path)
    text = " ".join(first.tokenizer.id_to_token(i) for i in range(2000, 2100))
    assert not first.known.any()
    vectors = first.encode([text, "a bridge over the river"])
    learned = int(first.known.sum())
    assert 90 <= learned < 200  # the prompts' tokens, not the 30,522 of the vocabulary
    # A second process adopts what the first saved, and computes nothing.
    second = StaticMiniLMEncoder(cache_dir=tmp_path)
    assert int(second.known.sum()) == learned
    np.testing.assert_array_equal(second.encode([text, "a bridge over the river"]), vectors)
    assert second._model is None
    assert [p.name for p in tmp_path.iterdir()] == [first._path.name]
    # A token computed alone has the vector it had in a batch of a hundred.
    bridge = first.tokenizer.token_to_id("bridge")
    alone = StaticMiniLMEncoder(cache_dir=tmp_path / "elsewhere")
    alone.learn([bridge])
    np.testing.assert_allclose(alone.table[bridge], first.table[bridge], atol=2e-3)


@pytest.mark.parametrize("damage", [b"", b"not numpy", b"PK\x03\x04cut short"])
def test_a_damaged_token_cache_is_ignored_and_rewritten(tmp_path: Path, damage: bytes) -> None:
    path = StaticMiniLMEncoder(cache_dir=tmp_path)._path
    path.write_bytes(damage)
    encoder = StaticMiniLMEncoder(cache_dir=tmp_path)
    assert not encoder.known.any()
    encoder.learn(list(range(2000, 2100)))  # enough new tokens to save
    with np.load(path, allow_pickle=False) as saved:
        assert int(saved["known"].sum()) == 100


def test_router_learns_which_prompts_the_cheap_model_gets_right(
    tmp_path: Path, encoder: StaticMiniLMEncoder
) -> None:
    data = load_csv(synthetic(tmp_path / "train.csv"))
    router = Router.train(data, encoder)
    assert router.learner.kind != "prior", [(s.kind, s.aiq) for s in router.cv]
    want = Policy(min_quality=0.8)
    unseen_math = [
        "What is 47 times 23? Show the working.",
        "What is 58 times 9? Show the working.",
    ]
    unseen_poems = ["Write a short poem about the ocean.", "Write a short poem about the dawn."]
    assert [router.decide(q, want).model for q in unseen_math] == ["big", "big"]
    assert [router.decide(q, want).model for q in unseen_poems] == ["small", "small"]
    # the winner's cross-validated predictions are kept for cascades trained on top
    x = featurize(encoder, router.template, data.prompts)
    kind, params = router.learner.kind, router.learner.params
    assert router.oof is not None
    np.testing.assert_allclose(router.oof, out_of_fold(kind, params, x, data.correct, 5))


def test_router_round_trips_through_a_file_without_pickle(
    tmp_path: Path, encoder: StaticMiniLMEncoder
) -> None:
    data = load_csv(synthetic(tmp_path / "train.csv"))
    router = Router.train(
        data, encoder, candidates=[("mlp", {"l2": 0.01, "hidden": 16, "epochs": 50})]
    )
    router.save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
    assert meta["format"] == "tierwise-router/1" and meta["learner"]["kind"] == "mlp"
    again = Router.load(tmp_path / "r.npz")
    again._encoder = encoder
    np.testing.assert_allclose(again.predict(POEMS[:3]), router.predict(POEMS[:3]), rtol=1e-5)


def test_cli_router_train_and_route(tmp_path: Path) -> None:
    runner = CliRunner()
    csv_path = synthetic(tmp_path / "train.csv")
    out = tmp_path / "router.npz"
    result = runner.invoke(app, ["router", "train", "--data", str(csv_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and out.is_file()
    result = runner.invoke(
        app, ["router", "route", "What is 3 times 4?", "--router", str(out), "--min-quality", "0.8"]
    )
    assert result.exit_code == 0, result.output
    assert "route: big" in result.output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-quality", "1.5", "--min-quality: Input should be less than or equal to 1"),
        ("--max-usd", "-1", "--max-usd: Input should be greater than or equal to 0"),
    ],
)
def test_cli_router_route_names_a_policy_out_of_range(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    args = ["router", "route", "Hi", "--router", str(tmp_path / "r.npz"), option, value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_cli_router_train_names_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["router", "train", "--data", str(tmp_path / "no.csv")])
    assert result.exit_code == 1
    assert "does not exist" in " ".join(result.output.split())


@pytest.mark.shared_data
def test_routing_bench_on_the_shared_routerbench_tasks(tmp_path: Path) -> None:
    from rich.console import Console

    from tierwise.bench.routing import run_routing_bench

    folder = SHARED / "routerbench"
    assert folder.is_dir(), f"no RouterBench samples at {folder}; set TIERWISE_DATA"
    data = run_routing_bench(
        folder,
        Console(quiet=True),
        tmp_path,
        encoders=["minilm-static"],
    )
    assert set(data["tasks"]) == {"arc_challenge", "mbpp"}
    for task in data["tasks"].values():
        assert task["decision_latency_ms"]["router"]["p50"] <= 5.0
        assert task["summary"]["reference"] == "gpt-4-1106-preview"
    assert (tmp_path / "routing.png").stat().st_size > 10_000
    # The grid tries logistic regression twice; the table must say which setting is which.
    assert "logistic (l2 0.1)" in (tmp_path / "routing.md").read_text()


# -- cascade calibration -------------------------------------------------------------------


def test_calibration_picks_the_lowest_threshold_that_keeps_the_target() -> None:
    from tierwise.routing.calibrate import Trial, calibrate

    trials = [Trial(c / 100, c >= 40) for c in range(100)]  # sure answers are the right ones
    result = calibrate(trials, target=0.9)
    assert result.threshold is not None and 0.3 <= result.threshold < 0.4
    assert result.kept_accuracy >= 0.9 and result.auroc == pytest.approx(1.0)
    hopeless = calibrate([Trial(c / 100, c % 2 == 0) for c in range(100)], target=0.9)
    assert hopeless.threshold is None


def test_labels_are_derived_from_the_models_marked_correct(tmp_path: Path) -> None:
    from tierwise.routing.calibrate import labelled_prompts

    path = tmp_path / "mc.csv"
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(
            [
                "prompt",
                "a",
                "b",
                "a|model_response",
                "b|model_response",
                "a|total_cost",
                "b|total_cost",
            ]
        )
        w.writerow(["Q1", "1", "0", "['C']", "['A']", 1, 1])
        w.writerow(["Q2", "0", "0", "['B']", "['D']", 1, 1])  # nobody right: no label
    assert [(x.prompt, x.answer) for x in labelled_prompts(path)] == [("Q1", "C")]


def test_a_vote_cascade_answers_by_majority_and_escalates_when_votes_split() -> None:
    from tierwise.routing.replay.vote_cascade import Stage, VoteCascade, key_matrix

    responses = [
        ["A", "A", "B", "B"],  # the two cheap models agree: stop, answer A
        ["A", "C", "C", "B"],  # split, then C wins 2 of 3: stop at stage two
        ["A", "C", "D", "B"],  # no majority: the last word (model 3) answers
    ]
    correct = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], float)
    cost = np.array([[1, 2, 4, 10]] * 3, float)
    rank = np.array([3, 2, 1, 0])  # model 3 is best
    policy = VoteCascade((Stage((0, 1), 2), Stage((2,), 2)), 3)
    usd, acc = policy.replay(key_matrix(responses), correct, cost, rank)
    assert acc == pytest.approx(1.0)
    assert usd == pytest.approx((3 + 7 + 17) / 3)  # each row pays only for whom it asked
    assert policy.describe(list("abcd")) == "a + b (2 of 2 agree) → + c (2 of 3 agree) → d"


def test_without_a_last_word_the_last_vote_stands() -> None:
    from tierwise.routing.replay.vote_cascade import Stage, VoteCascade, key_matrix

    keys = key_matrix([["A", "B", "B"], ["A", "B", "C"]])
    correct = np.array([[1, 0, 0], [0, 1, 0]], float)
    cost = np.array([[1, 2, 4]] * 2, float)
    rank = np.array([1, 0, 2])  # model 1 is best, then 0
    policy = VoteCascade((Stage((0, 2), 2), Stage((1,), 0)), None)
    usd, acc = policy.replay(keys, correct, cost, rank)
    # row 0: B wins 2 of 3 (wrong); row 1: a three-way split goes to model 1 (right)
    assert (usd, acc) == (pytest.approx(7.0), pytest.approx(0.5))
    assert policy.describe(list("abc")) == "a + c (2 of 2 agree) → + b (majority)"
    with pytest.raises(ConfigError, match="asked twice"):
        VoteCascade((Stage((0, 1), 2),), 1)
    with pytest.raises(ConfigError, match="more agreeing answers"):
        VoteCascade((Stage((0, 1), 3),), 2)


def test_a_vote_ignores_empty_answers_and_breaks_ties_towards_the_better_model() -> None:
    from tierwise.routing.replay.vote_cascade import key_matrix, majority

    keys = key_matrix([["", "", "B"], ["A", "B", ""], ["A", "B", "C"]])
    winner, votes = majority(keys, [0, 1, 2], rank=np.array([2, 0, 1]))  # 2 best, then 0
    # row 0: empty answers never agree; rows 1 and 2: ties, won by the better-ranked
    assert winner.tolist() == [2, 0, 2]
    assert votes.tolist() == [1, 1, 1]


def test_the_vote_search_stays_bounded_on_a_long_frontier() -> None:
    from tierwise.routing.replay import vote_cascade

    m, n = 20, 100
    # every model better and dearer than the last: all 19 below the best are the frontier
    correct = (np.arange(n)[:, None] < np.linspace(30, 95, m)[None, :]).astype(float)
    cost = np.tile(np.geomspace(1, 100, m), (n, 1))
    singles = curves.single_model_points([str(j) for j in range(m)], correct, cost)
    assert len(curves.frontier(singles).models) == m
    rank = vote_cascade._rank(correct, cost)
    pool = vote_cascade._pool(rank, correct, cost)
    assert len(pool) == vote_cascade.POOL_SIZE and len(set(pool)) == len(pool)
    assert m - 1 not in pool  # the best model is the last word, not a voter


def test_the_vote_search_beats_mixing_when_cheap_models_err_apart() -> None:
    from tierwise.routing.replay import curves
    from tierwise.routing.replay.vote_cascade import replay_front, search

    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(0, 4, n)
    right = np.stack([rng.random(n) < a for a in (0.7, 0.7, 0.95)], axis=1)
    wrong = (truth[:, None] + 1 + rng.integers(0, 3, (n, 3))) % 4  # never the truth
    keys = np.where(right, truth[:, None], wrong)
    correct = right.astype(float)
    cost = np.tile([1.0, 1.0, 20.0], (n, 1))
    front = search(keys, correct, cost)
    points = replay_front(front, correct, cost, keys, correct, cost)
    hull = metrics.upper_hull(points)
    singles = curves.single_model_points(["a", "b", "c"], correct, cost)
    frontier = curves.frontier(singles).points
    assert set(frontier) <= set(points)  # models alone are in the search
    mixing = curves.random_mix_points(singles)
    assert metrics.accuracy_at(hull, 8.0) > metrics.accuracy_at(mixing, 8.0) + 0.03


def test_both_minilm_encoders_share_one_model_in_a_process(tmp_path: Path) -> None:
    from tierwise.routing.features import MiniLMEncoder

    static = StaticMiniLMEncoder(cache_dir=tmp_path)
    static.prepare()
    assert MiniLMEncoder().model is static._model
