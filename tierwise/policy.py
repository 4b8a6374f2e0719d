"""A request's policy: its constraints and the weights of the planner's objective.

Kept apart from the cluster spec (:mod:`tierwise.config`, which re-exports these names)
because a policy also arrives with each request, in a header or a body, and is laid
over the API key's and the gateway's (:meth:`Policy.over`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# raw-stays-local: nothing raw leaves the device. pii-stays-local: a prompt with personal
# data stays, others may leave. redact: personal data is masked before a prompt leaves
# and restored in the answer. Inputs that cannot be checked or masked (photos) are
# treated as raw-stays-local under the last two.
Privacy = Literal["raw-stays-local", "pii-stays-local", "redact", "features-may-leave", "any"]
LOCAL_ONLY: frozenset[str] = frozenset({"raw-stays-local", "pii-stays-local", "redact"})

#: The quality floor when a policy sets none: no plan more than one point of measured
#: accuracy below the best plan the request could use (see ``Policy.max_quality_loss``).
DEFAULT_MAX_QUALITY_LOSS = 0.01


class _Strict(BaseModel):
    # A policy's numbers are limits and weights: infinity (JSON's 1e999) or NaN in one
    # would silently mean "no limit" or poison every cost, so neither is a number here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ObjectiveWeights(_Strict):
    """The planner minimises latency_s·latency + usd·USD + energy·joules + quality·loss,
    where loss is how far a plan's measured quality (a fraction) is below the best plan's.
    The defaults value one cent like 0.1 s, ten joules like 1 ms, and one point of
    accuracy (0.01) like 10 ms, or a tenth of a cent.

    ``explore`` is optimism about estimates built on few measurements: a chat plan's
    predicted compute counts as ``explore / sqrt(samples)`` shorter. Live answers refine
    only the node that served them, so without it a node profiled once on a bad sample
    would never be tried again. 0 turns it off."""

    latency: float = Field(1.0, ge=0)
    usd: float = Field(10.0, ge=0)
    energy: float = Field(1e-4, ge=0)
    quality: float = Field(1.0, ge=0)
    explore: float = Field(0.5, ge=0, le=1)


class Policy(_Strict):
    """A request's constraints. ``None`` means "not set here": a per-request policy is
    laid over the API key's, which is laid over the gateway's.

    Quality has a floor by default: no plan whose *measured* quality is more than
    ``max_quality_loss`` (default 0.01, one point) below the best plan the request could
    use. ``quality: any`` lifts that floor (``min_quality`` still holds if set);
    ``quality: floor`` puts it back over a key that lifted it."""

    max_latency_ms: float | None = Field(None, gt=0)
    min_quality: float | None = Field(None, ge=0, le=1)
    max_quality_loss: float | None = Field(None, ge=0, le=1)
    quality: Literal["floor", "any"] | None = None
    max_usd: float | None = Field(None, ge=0)
    privacy: Privacy | None = None
    # For model "auto": the device's own model answers first, and the request goes on to
    # other tiers only when that answer's confidence (geometric-mean token probability)
    # is below this. Calibrate it with `tierwise cascade calibrate`.
    cascade_confidence: float | None = Field(None, gt=0, lt=1)
    weights: ObjectiveWeights | None = None

    def over(self, base: Policy) -> Policy:
        """This policy's set fields, the rest from ``base`` (weights field by field)."""
        mine = self.model_dump(exclude_none=True, exclude_unset=True)
        merged = base.model_dump(exclude_none=True)
        if self.weights is not None and base.weights is not None:
            mine["weights"] = {**merged["weights"], **self.weights.model_dump(exclude_unset=True)}
        # Validated again, so nested settings stay models (model_copy would leave dicts).
        return Policy.model_validate({**merged, **mine})

    @property
    def loss_floor(self) -> float | None:
        """The largest quality loss allowed against the best plan; None: no such floor."""
        if self.quality == "any":
            return None
        return DEFAULT_MAX_QUALITY_LOSS if self.max_quality_loss is None else self.max_quality_loss
