"""The second hop of a three-tier plan: the middle node forwards its output itself.

A device → edge → cloud plan must cross the edge–cloud link, not go back through the
device, so the edge node (not the gateway) calls the cloud node with the features it
encoded and relays the answer. What the second call measured travels back in headers,
so the gateway can account for both hops:

    X-Tierwise-Next-Compute-Ms, X-Tierwise-Next-Bytes-Up, X-Tierwise-Next-Bytes-Down,
    X-Tierwise-Next-Seconds, X-Tierwise-Next-Rapl-Joules (where the last node has RAPL)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tierwise.errors import InputError
from tierwise.runtime.node_client import NodeClient, PayloadReply

NEXT = "X-Tierwise-Next-"


@dataclass(frozen=True)
class Relay:
    """How a node reaches the others: their address as seen from its tier, and the token."""

    peer_url: Callable[[str], str]
    token: str | None

    async def forward(
        self, model: str, payload: bytes, start: int, end: int, node: str
    ) -> tuple[bytes, dict[str, str]]:
        """Run stages [start, end) on ``node`` over ``payload``; its output and headers."""
        async with NodeClient(self.peer_url(node), self.token, timeout=300) as client:
            reply = await client.run_payload(model, payload, start, end)
        return reply.payload, next_headers(reply)


def next_headers(reply: PayloadReply) -> dict[str, str]:
    t = reply.transfer
    headers = {
        f"{NEXT}Compute-Ms": f"{reply.compute_ms:.3f}",
        f"{NEXT}Bytes-Up": str(t.bytes_up),
        f"{NEXT}Bytes-Down": str(t.bytes_down),
        f"{NEXT}Seconds": f"{t.seconds:.6f}",
    }
    if reply.rapl_joules is not None:
        headers[f"{NEXT}Rapl-Joules"] = f"{reply.rapl_joules:.6f}"
    return headers


def check_forward(then: str | None, then_end: int | None, end: int, n_stages: int) -> None:
    """A forward names a node and the end of its stages, which lie after ours."""
    if then is None and then_end is None:
        return
    if then is None or then_end is None:
        raise InputError("give both `then` (a node) and `then_end`, or neither", param="then")
    if not end < then_end <= n_stages:
        raise InputError(
            f"then_end must be after end ({end}) and at most {n_stages}; got {then_end}",
            param="then_end",
        )
