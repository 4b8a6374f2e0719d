"""Split inference over the wire gives the whole model's logits (fp32 tolerance)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.conftest import RunningCluster
from tierwise.models.efficientnet_lite import EfficientNetLite
from tierwise.net.link_proxy import LinkProxy, LinkSettings, Route
from tierwise.runtime.node_client import NodeClient


@pytest.fixture(scope="module")
def lite0() -> Iterator[EfficientNetLite]:
    model = EfficientNetLite("efficientnet-lite0", "lite0")
    yield model
    model.close()


@pytest.fixture(scope="module")
def photo_input(lite0: EfficientNetLite, photo_jpeg: bytes) -> np.ndarray:
    return lite0.preprocess(Image.open(io.BytesIO(photo_jpeg)))


def test_model_exposes_at_least_three_split_points(lite0: EfficientNetLite) -> None:
    assert len(lite0.split_points) >= 3
    for before, after in zip(lite0.stages, lite0.stages[1:], strict=False):
        assert before.output_shape == after.input_shape


def test_local_stage_chain_equals_the_unsplit_forward(
    lite0: EfficientNetLite, photo_input: np.ndarray
) -> None:
    whole = lite0.whole_model_logits(photo_input)
    for k in lite0.split_points:
        head = lite0.run_stages(photo_input, 0, k)
        np.testing.assert_allclose(
            lite0.run_stages(head, k, len(lite0.stages)), whole, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5, 6])
def test_device_head_plus_edge_tail_over_the_wire(
    cluster: RunningCluster, lite0: EfficientNetLite, photo_input: np.ndarray, split: int
) -> None:
    async def run() -> np.ndarray:
        # A private proxy in front of the edge node counts only this test's bytes.
        edge = cluster.state.spec.node("edge")
        route = Route("edge", edge.host, edge.port, "up")
        async with (
            LinkProxy("test", LinkSettings(1e9, 1e9, 0.0, 0.0), [route]) as proxy,
            NodeClient(cluster.url("device"), cluster.token) as device,
            NodeClient(f"http://127.0.0.1:{proxy.bound_ports['edge']}", cluster.token) as tail_node,
        ):
            head = await device.run_stages("efficientnet-lite0", photo_input, 0, split)
            assert head.array.shape[1:] == lite0.stages[split - 1].output_shape
            tail = await tail_node.run_stages(
                "efficientnet-lite0", head.array, split, len(lite0.stages)
            )
            # The client's byte count is what the proxy saw on the wire.
            assert tail.transfer.bytes_up == proxy.counters.bytes_up
            assert tail.transfer.bytes_down == proxy.counters.bytes_down
            assert tail.transfer.bytes_up > head.array.nbytes
            return tail.array

    logits = asyncio.run(run())
    whole = lite0.whole_model_logits(photo_input)
    np.testing.assert_allclose(logits, whole, rtol=0, atol=1e-4)
    assert int(logits.argmax()) == int(whole.argmax())


def test_three_tier_chain_device_edge_cloud(
    cluster: RunningCluster, lite0: EfficientNetLite, photo_input: np.ndarray
) -> None:
    """Device runs stages 0-1, edge 2-3, cloud 4-6; edge and cloud are reached through links."""

    async def run() -> np.ndarray:
        clients = [NodeClient(cluster.url(n), cluster.token) for n in ("device", "edge", "cloud")]
        x = photo_input
        for client, (start, end) in zip(clients, [(0, 2), (2, 4), (4, 7)], strict=True):
            x = (await client.run_stages("efficientnet-lite0", x, start, end)).array
        for client in clients:
            await client.aclose()
        return x

    np.testing.assert_allclose(
        asyncio.run(run()), lite0.whole_model_logits(photo_input), rtol=0, atol=1e-4
    )


def test_batch_of_several_images_splits_too(
    cluster: RunningCluster, lite0: EfficientNetLite, photo_input: np.ndarray
) -> None:
    batch = np.concatenate([photo_input, photo_input[:, :, ::-1, :].copy(), photo_input * 0.5])

    async def run() -> np.ndarray:
        async with NodeClient(cluster.url("edge"), cluster.token) as edge:
            head = await edge.run_stages("efficientnet-lite0", batch, 0, 3)
            return (await edge.run_stages("efficientnet-lite0", head.array, 3, 7)).array

    np.testing.assert_allclose(
        asyncio.run(run()), lite0.whole_model_logits(batch), rtol=0, atol=1e-4
    )
