"""What each round of a federated run cost on the wire, and how long it would have taken.

Bytes are exact: the sum of the serialized objects Flower transfers for each message.
Time is EMULATED from those bytes: each client's transfers are charged at its own link
rate, and a round lasts as long as its slowest client (the straggler rule):

    round time = max over clients (down bytes / downlink + compute + up bytes / uplink)

A client that never answered held the round until the timeout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flwr.app import Message
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def message_bytes(msg: Message) -> int:
    """Bytes of every serialized object (message, records, arrays, chunks) in ``msg``."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())


@dataclass
class ClientLeg:
    partition: int | None  # None when the client never said (no reply, or a crash)
    down_bytes: int
    up_bytes: int = 0
    compute_s: float = 0.0
    outcome: str = "ok"  # ok | rejected: REASON | failed: REASON | no reply

    def seconds(self, uplink: float, downlink: float) -> float:
        return self.down_bytes / downlink + self.compute_s + self.up_bytes / uplink


@dataclass
class RoundRecord:
    round: int
    sent: int
    accepted: int
    up_bytes: int
    down_bytes: int
    simulated_s: float
    compute_s: float  # the slowest client's measured training time
    accuracy: float | None = None
    loss: float | None = None
    problems: list[str] = field(default_factory=list)
    legs: list[ClientLeg] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def settle_round(
    round_: int,
    legs: list[ClientLeg],
    rates: dict[int, tuple[float, float]],
    default_rates: tuple[float, float],
    timeout_s: float,
) -> RoundRecord:
    """One round's totals and its straggler-rule duration."""
    times = []
    for leg in legs:
        if leg.outcome == "no reply":
            times.append(timeout_s)
            continue
        known = leg.partition is not None
        up, down = rates.get(leg.partition, default_rates) if known else default_rates  # type: ignore[arg-type]
        times.append(leg.seconds(up, down))
    return RoundRecord(
        round=round_,
        sent=len(legs),
        accepted=sum(leg.outcome == "ok" for leg in legs),
        up_bytes=sum(leg.up_bytes for leg in legs),
        down_bytes=sum(leg.down_bytes for leg in legs),
        simulated_s=max(times, default=0.0),
        compute_s=max((leg.compute_s for leg in legs), default=0.0),
        problems=[
            f"partition {leg.partition}: {leg.outcome}" for leg in legs if leg.outcome != "ok"
        ],
        legs=list(legs),
    )


def resettle(
    legs: list[dict[str, Any]],
    rates: dict[int, tuple[float, float]],
    default_rates: tuple[float, float],
    timeout_s: float,
) -> float:
    """A recorded round's duration under other link rates (same bytes, same compute):
    how the bench shows stragglers without training again."""
    record = settle_round(0, [ClientLeg(**leg) for leg in legs], rates, default_rates, timeout_s)
    return record.simulated_s
