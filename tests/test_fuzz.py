"""Schemathesis against the OpenAPI schemas of a real gateway and a real node.

Every operation each server's ``/openapi.json`` lists is called with cases generated
from it, valid ones and invalid ones, on a cluster of real processes. A response of 500
or more fails the test, and so does one the schema does not describe: an undeclared
status, content type or header, or a body that breaks the declared shape.

Two changes to the served schemas make the cases reach the models instead of stopping
at a 404: every ``model`` field and parameter becomes an enum of the server's real model
names plus one unknown name, and ``max_tokens`` is capped at 16 so that valid chats stay
short (the context-length refusal of larger ones is covered in test_chat_input.py).

Reproducible: Hypothesis runs derandomized (its seed is fixed by the operation and the
schema), with no example database, so a failure comes back on the next run. How many
requests to aim for per server comes from ``TIERWISE_FUZZ_REQUESTS`` (default 250, a
minute or so besides the cluster's start; spread evenly over the operations that take
input, half valid and half invalid cases); the issue's figures came from 2,100. The
requests made and the time taken are written to ``fuzz-counts.json`` in the pytest
base temp directory and printed (``pytest -s``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tierwise.config import default_spec
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import ClusterState, read_api_key

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

TARGET = int(os.environ.get("TIERWISE_FUZZ_REQUESTS", "250"))
# a bound on the wall time, besides the count: the cluster's start, then up to 1 s a request
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300 + TARGET)]

UNKNOWN_MODEL = "no-such-model"
MAX_FUZZ_TOKENS = 16


@pytest.fixture(scope="module")
def fuzz_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, ClusterState]]:
    """A cluster of its own: the fuzzer spends budget and fills the ledger."""
    spec = (
        default_spec()
        .with_free_ports()
        .model_copy(update={"variants_dir": None, "codecs_dir": None})
    )
    local = LocalCluster(spec, tmp_path_factory.mktemp("fuzz-cluster"))
    state = local.start()
    try:
        yield local, state
    finally:
        local.stop()


def _patched(raw: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The schema with real model names as ``model``'s enum and short chats (see above)."""
    names = [*models, UNKNOWN_MODEL]
    for path in raw["paths"].values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                if param["name"] == "model":
                    param["schema"] = {"type": "string", "enum": names}
    for schema in raw.get("components", {}).get("schemas", {}).values():
        props = schema.get("properties", {})
        if "model" in props:
            props["model"] = {"type": "string", "enum": names}
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props:
                props[field] = {"type": "integer", "minimum": 1, "maximum": MAX_FUZZ_TOKENS}
        if "max_tokens" in props:
            schema["required"] = sorted({*schema.get("required", []), "max_tokens"})
    return raw


def _fuzz(base_url: str, token: str, models: list[str], label: str) -> dict[str, Any]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    headers = {"Authorization": f"Bearer {token}"}
    raw = httpx.get(f"{base_url}/openapi.json", headers=headers, timeout=30).json()
    taking_input = sum(
        1
        for path in raw["paths"].values()
        for op in path.values()
        if op.get("parameters") or op.get("requestBody")
    )
    examples = math.ceil(TARGET / taking_input)
    schema = schemathesis.openapi.from_dict(_patched(raw, models))
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=120)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=checks, headers=headers)

        run()
    seconds = time.perf_counter() - started
    return {
        "server": label,
        "requests": sum(statuses.values()),
        "seconds": round(seconds, 1),
        "statuses": dict(sorted(statuses.items())),
        "target": TARGET,
        "examples_per_operation": examples,
    }


def _report(tmp_path_factory: pytest.TempPathFactory, figures: dict[str, Any]) -> None:
    path = Path(tmp_path_factory.getbasetemp()) / "fuzz-counts.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known[figures["server"]] = figures
    path.write_text(json.dumps(known, indent=2))
    print(json.dumps(figures))


def test_fuzz_the_gateway(
    fuzz_cluster: tuple[LocalCluster, ClusterState], tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = fuzz_cluster[1]
    key = read_api_key(state.state_dir)
    listed = httpx.get(
        f"{state.gateway_url}/v1/models", headers={"Authorization": f"Bearer {key}"}
    ).json()
    models = [m["id"] for m in listed["data"]]
    figures = _fuzz(state.gateway_url, key, models, "gateway")
    _report(tmp_path_factory, figures)
    assert figures["requests"] >= TARGET / 2  # small input spaces run out of cases


def test_fuzz_a_node(
    fuzz_cluster: tuple[LocalCluster, ClusterState], tmp_path_factory: pytest.TempPathFactory
) -> None:
    state, token = fuzz_cluster[1], fuzz_cluster[0].token
    url = state.node_url("device")
    listed = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {token}"}).json()
    models = [m["id"] for m in listed["data"]]
    figures = _fuzz(url, token, models, "node device")
    _report(tmp_path_factory, figures)
    assert figures["requests"] >= TARGET / 2  # small input spaces run out of cases
