"""Labelled routing data in RouterBench's CSV form.

One row per prompt. For each model M: a column ``M`` with correctness in [0, 1] (may be
empty), ``M|total_cost`` with that call's cost in USD and ``M|model_response`` with its
answer. Models are found from the columns, so any CSV in this form loads, whatever models
and task it holds.
"""

from __future__ import annotations

import ast
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tierwise.errors import InputError

_COST = "|total_cost"
_RESPONSE = "|model_response"
_NOT_MODELS = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}


@dataclass(frozen=True)
class RoutingData:
    """Prompts and, per model, correctness, cost and answer. Missing labels are NaN."""

    name: str
    prompts: list[str]
    models: list[str]
    correct: np.ndarray  # (n, m) float, NaN where unknown
    cost: np.ndarray  # (n, m) USD, NaN where unknown
    responses: list[list[str]]  # [n][m]

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray) -> RoutingData:
        return RoutingData(
            self.name,
            [self.prompts[i] for i in rows],
            self.models,
            self.correct[rows],
            self.cost[rows],
            [self.responses[i] for i in rows],
        )

    def filled(self) -> tuple[np.ndarray, np.ndarray]:
        """Correctness with unknown as wrong, and cost with unknown as the model's mean."""
        correct = np.nan_to_num(self.correct, nan=0.0)
        mean_cost = np.nanmean(np.where(np.isnan(self.cost), np.nan, self.cost), axis=0)
        cost = np.where(np.isnan(self.cost), mean_cost[None, :], self.cost)
        return correct, cost


def _prompt_text(raw: str) -> str:
    """RouterBench stores prompts as a Python list literal of turns; plain text is kept."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parts = ast.literal_eval(text)  # a literal parser: evaluates no code
        except (ValueError, SyntaxError):
            return raw
        if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return raw


def _response_text(raw: str) -> str:
    return _prompt_text(raw)


def _number(value: str, where: str) -> float:
    if value.strip() == "":
        return float("nan")
    try:
        return float(value)
    except ValueError as exc:
        raise InputError(f"{where}: expected a number, got {value!r}") from exc


def load_csv(path: Path) -> RoutingData:
    """Read one RouterBench-form CSV; errors name the file, row and column."""
    if not path.is_file():
        raise InputError(f"routing data {path} does not exist", param="data")
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "prompt" not in columns:
            raise InputError(f"{path}: no 'prompt' column; columns are {columns[:8]}")
        models = [c for c in columns if "|" not in c and c not in _NOT_MODELS]
        missing = [m + _COST for m in models if m + _COST not in columns]
        if not models or missing:
            raise InputError(
                f"{path}: each model column M needs a 'M{_COST}' column; "
                f"missing {missing[:3] or 'any model column'}"
            )
        prompts, correct, cost, responses = [], [], [], []
        for line, row in enumerate(reader, start=2):
            prompts.append(_prompt_text(row["prompt"] or ""))
            correct.append([_number(row[m] or "", f"{path}:{line} column {m!r}") for m in models])
            cost.append(
                [_number(row[m + _COST] or "", f"{path}:{line} {m + _COST!r}") for m in models]
            )
            responses.append([_response_text(row.get(m + _RESPONSE) or "") for m in models])
    if not prompts:
        raise InputError(f"{path}: no rows")
    return RoutingData(
        path.stem, prompts, models, np.array(correct, float), np.array(cost, float), responses
    )


def find_tasks(directory: Path) -> list[tuple[str, Path, Path]]:
    """``<task>_train.csv`` / ``<task>_test.csv`` pairs in a directory, by task name."""
    if not directory.is_dir():
        raise InputError(f"routing data directory {directory} does not exist", param="data")
    tasks = []
    for train in sorted(directory.glob("*_train.csv")):
        task = train.name.removesuffix("_train.csv")
        test = directory / f"{task}_test.csv"
        if test.is_file():
            tasks.append((task, train, test))
    if not tasks:
        raise InputError(f"{directory}: no <task>_train.csv with a matching <task>_test.csv")
    return tasks
