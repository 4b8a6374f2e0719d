"""TaskBench's metrics on tiny hand-made graphs: each rule checked by counting by hand."""

from __future__ import annotations

import pytest

from tierwise.orchestrate.catalog import Catalog
from tierwise.orchestrate.examples import Example, parse_examples
from tierwise.orchestrate.graph import Link, TaskGraph, TaskNode
from tierwise.orchestrate.planner import Prediction
from tierwise.orchestrate.scoring import (
    Counts,
    argument_items,
    binary_counts,
    content_type,
    is_valid,
    node_counts,
    resource_links,
    score,
)

CATALOG = Catalog.default()
IC, TG, TR, SUM = "Image Classification", "Text Generation", "Translation", "Summarization"


def _graph(*nodes: tuple[str, tuple[str, ...]], links: tuple[Link, ...] = ()) -> TaskGraph:
    return TaskGraph(tuple(TaskNode(t, a) for t, a in nodes), links)


def test_counts_f1_is_micro_and_none_when_there_is_nothing() -> None:
    total = Counts(2, 1, 0) + Counts(1, 0, 2)
    assert total == Counts(3, 1, 2)
    assert total.f1 == pytest.approx(200 * 3 / (6 + 1 + 2))
    assert Counts().f1 is None


def test_node_counts_are_sets_of_catalog_tools_with_underscores_as_spaces() -> None:
    gold = _graph((IC, ("a.jpg",)), (TG, ("<node-0>",)))
    pred = _graph(("Image_Classification", ("a.jpg",)), (TR, ("<node-0>",)), (TR, ("x",)))
    # IC matches (the underscore reads as a space); Translation once, as a set; TG missed
    assert node_counts(gold, pred, CATALOG) == Counts(1, 1, 1)


def test_node_names_outside_the_catalog_count_for_nothing_on_either_side() -> None:
    gold = _graph((IC, ()), ("Audio Enhancement", ()))
    pred = _graph((IC, ()), ("Image Processing", ()))
    assert node_counts(gold, pred, CATALOG) == Counts(1, 0, 0)
    assert node_counts(gold, None, CATALOG) == Counts(0, 0, 1)


def test_edges_come_from_node_arguments_and_a_node_reading_itself_is_no_link() -> None:
    graph = _graph(
        (IC, ("a.jpg",)),
        (TG, ("<node-0>",)),
        (TR, ("<node-2>",)),  # itself: no link (TaskBench's one-based slips look like this)
        (SUM, ("<node-7>",)),  # no such node: no link
    )
    assert resource_links(graph) == {(IC, TG)}


def test_edge_f1_counts_names_outside_the_catalog() -> None:
    gold = _graph(
        ("Audio Enhancement", ("a.wav",)), ("Automatic Speech Recognition", ("<node-0>",))
    )
    pred = _graph(("Audio-to-Audio", ("a.wav",)), ("Automatic Speech Recognition", ("<node-0>",)))
    assert binary_counts(resource_links(gold), resource_links(pred)) == Counts(0, 1, 1)
    assert binary_counts(resource_links(gold), resource_links(gold)) == Counts(1, 0, 0)


def test_argument_items_name_the_feeding_tools_output_type_or_the_contents_type() -> None:
    graph = _graph(
        (IC, ("photo.png",)),
        (TG, ("<node-0>", "one sentence")),
        ("Text-to-Speech", ("<node-1>",)),
        ("Sentence Similarity", ("<node-3>",)),  # itself: dropped
        ("Audio Classification", ("<node-2>",)),
    )
    assert argument_items(graph, CATALOG) == {
        f"{IC}-image-photo.png",
        f"{TG}-text-{IC}",
        f"{TG}-text-one sentence",
        f"Text-to-Speech-text-{TG}",
        "Audio Classification-audio-Text-to-Speech",
    }
    similar = _graph(("Sentence Similarity", ("a", "b")), (TG, ("<node-0>",)))
    assert f"{TG}-none-Sentence Similarity" in argument_items(similar, CATALOG)
    other = _graph(("Image Processing", ("a.jpg",)), (TG, ("<node-0>",)))
    assert f"{TG}-other-Image Processing" in argument_items(other, CATALOG)


def test_content_types_by_extension_as_taskbench_tests_them() -> None:
    assert content_type("'example.jpg'") == "image"
    assert content_type("clip.wav") == "audio"
    assert content_type("movie.mp4") == "video"
    assert content_type("Translate this") == "text"


def test_valid_means_the_catalog_accepts_it_for_the_files_the_request_names() -> None:
    good = _graph((IC, ("a.jpg",)), (TG, ("<node-0>",)))
    assert is_valid(good, "What is in a.jpg?", CATALOG)
    assert not is_valid(good, "What is in this photo?", CATALOG)  # a.jpg is not attached
    assert not is_valid(_graph(("Image Processing", ())), "x", CATALOG)
    assert not is_valid(None, "x", CATALOG)
    assert not is_valid(_graph((TG, ("<node-0>",))), "x", CATALOG)


def _examples() -> list[Example]:
    lines = [
        '{"id": "1", "type": "single", "instruction": "Label a.jpg", "task_nodes": '
        '[{"task": "Image Classification", "arguments": ["a.jpg"]}], "task_links": []}',
        '{"id": "2", "type": "chain", "instruction": "Label a.jpg, then write about it", '
        '"task_nodes": [{"task": "Image Classification", "arguments": ["a.jpg"]}, '
        '{"task": "Text Generation", "arguments": ["<node-0>"]}], "task_links": '
        '[{"source": "Image Classification", "target": "Text Generation"}, '
        '{"source": "Text Generation", "target": "Conversations"}]}',
    ]
    return parse_examples("\n".join(lines), "test")


def test_score_breaks_down_by_type_and_counts_a_missing_answer_as_no_graph() -> None:
    examples = _examples()
    assert examples[1].stated_links[1] == (TG, "Conversations")  # kept, though not a node
    right = Prediction("2", examples[1].graph, 0.001, "device")
    scores = score([right], examples, CATALOG)
    assert scores["overall"].examples == 2
    assert scores["chain"].node_f1 == 100.0 and scores["chain"].edge_f1 == 100.0
    # the stated link to a tool the graph lacks is a miss the planner could not make
    assert scores["chain"].link_f1 == pytest.approx(200 / 3)
    assert scores["single"].node_f1 == 0.0 and scores["single"].edge_f1 is None
    assert scores["single"].valid == 0.0 and scores["overall"].valid == 0.5
    assert scores["dag"].examples == 0 and scores["dag"].node_f1 is None
    assert scores["overall"].argument_f1 == pytest.approx(200 * 2 / (4 + 0 + 1))
