"""The settings of one federated run, validated once and then shipped as flat records.

The same settings reach the server (in-process for simulation, as Flower's run config in
a deployment) and every client (inside each training message's ConfigRecord), so both
sides agree on the model, the partition and the compression without any side channel.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tierwise.config import Rate
from tierwise.federated.partition import PartitionSpec
from tierwise.federated.update_codec import CompressionSpec

Strategy = Literal["fedavg", "fedprox"]
ModelKind = Literal["head", "cnn"]
# Strategies people ask for that Flower 1.41 does not ship; named so the error can say so.
NOT_IN_FLOWER = {"scaffold"}


class FLSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clients: Annotated[int, Field(ge=1, le=1000)] = 10
    rounds: Annotated[int, Field(ge=1)] = 20
    local_epochs: Annotated[int, Field(ge=1)] = 1
    partition: str = "iid"
    uplink: Rate = 250_000.0
    downlink: Rate = 500_000.0
    slow_clients: Annotated[int, Field(ge=0)] = 0
    slow_factor: Annotated[float, Field(ge=1.0)] = 5.0
    compress: str = "none"
    strategy: Strategy = "fedavg"
    proximal_mu: Annotated[float, Field(ge=0.0)] = 0.01
    dp: bool = False
    dp_noise_multiplier: Annotated[float, Field(ge=0.0)] = 0.1
    dp_clipping_norm: Annotated[float, Field(gt=0.0)] = 1.0
    secagg: bool = False  # Flower's SecAgg+: the server sees only the sum of the models
    model: ModelKind = "head"
    image_size: Annotated[int, Field(ge=32, le=512)] = 128
    # Tuned for the default head: a lower rate and a decay keep the averaged linear head
    # from drifting past its best (at 0.05 it peaks by round 7 and then loses 2 pt).
    lr: Annotated[float, Field(gt=0.0)] = 0.003
    lr_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95  # per round: lr · decay^(round-1)
    batch: Annotated[int, Field(ge=1)] = 32
    fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    min_clients: Annotated[int, Field(ge=1)] = 2
    round_timeout: Annotated[float, Field(gt=0.0)] = 600.0
    seed: int = 0
    data: str = ""
    report: str = ""  # where the server writes its JSON report
    fault: str = ""  # fault injection for tests: KIND@PARTITION:ROUND[,...]

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str) -> str:
        return PartitionSpec.parse(value).name

    @field_validator("compress")
    @classmethod
    def _compress(cls, value: str) -> str:
        return CompressionSpec.parse(value).name

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in NOT_IN_FLOWER:
            raise ValueError(
                f"{value} is not among the strategies Flower 1.41 ships; use fedavg or fedprox"
            )
        return value

    @model_validator(mode="after")
    def _secagg_alone(self) -> FLSettings:
        if self.secagg and (self.compress != "none" or self.dp):
            raise ValueError(
                "secagg: SecAgg+ masks dense model vectors, so it runs with compress none "
                "and without dp"
            )
        return self

    @property
    def partition_spec(self) -> PartitionSpec:
        return PartitionSpec.parse(self.partition)

    @property
    def compression(self) -> CompressionSpec:
        return CompressionSpec.parse(self.compress)

    def link_rates(self, partition_id: int) -> tuple[float, float]:
        """(uplink, downlink) in B/s of one client; the last ``slow_clients`` have a
        ``slow_factor`` times slower uplink (the stragglers)."""
        slow = partition_id >= self.clients - self.slow_clients
        return (self.uplink / self.slow_factor if slow else self.uplink), self.downlink

    def to_record(self) -> dict[str, int | float | str | bool]:
        """Flat values for a Flower ConfigRecord or run config (keys use dashes)."""
        return {k.replace("_", "-"): v for k, v in self.model_dump().items()}

    @classmethod
    def from_record(cls, record: Any) -> FLSettings:
        """The settings back from a ConfigRecord or run config; unrelated keys are ignored."""
        names = set(cls.model_fields)
        values = {str(k).replace("-", "_"): v for k, v in dict(record).items()}
        return cls(**{k: v for k, v in values.items() if k in names})
