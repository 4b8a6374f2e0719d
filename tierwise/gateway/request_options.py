"""Per-request options: a policy and, for experiments, a pinned plan.

They come from the ``X-Tierwise-Policy`` header, as JSON or as ``key=value; ...``,
or from a ``tierwise`` object in a JSON body (OpenAI clients send it with
``extra_body``): ``{"tierwise": {"policy": {...}, "plan": "split@3/edge/q8"}}``.
A plan can also be pinned with the ``X-Tierwise-Plan`` header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tierwise.config import Policy, format_validation_error
from tierwise.errors import InputError

POLICY_HEADER = "x-tierwise-policy"
PLAN_HEADER = "x-tierwise-plan"


@dataclass(frozen=True)
class RequestOptions:
    policy: Policy
    pinned_plan: str | None
    #: set by the gateway itself for the steps of a plain-language run, never by a client
    run_id: str | None = None


def parse_options(headers: dict[str, str], body_ext: Any = None) -> RequestOptions:
    fields: dict[str, Any] = {}
    pinned = headers.get(PLAN_HEADER)
    if POLICY_HEADER in headers:
        fields.update(_parse_header(headers[POLICY_HEADER]))
    if body_ext is not None:
        if not isinstance(body_ext, dict):
            raise InputError("`tierwise` must be an object", param="tierwise")
        policy = body_ext.get("policy")
        if policy is not None and not isinstance(policy, dict):
            raise InputError(
                f"tierwise.policy: expected an object, got {type(policy).__name__}",
                param="tierwise.policy",
            )
        fields.update(policy or {})
        pinned = body_ext.get("plan", pinned)
    try:
        policy = Policy.model_validate(fields)
    except ValidationError as exc:
        raise InputError(
            f"invalid policy:\n{format_validation_error(exc)}", param="policy"
        ) from exc
    if pinned is not None and not isinstance(pinned, str):
        raise InputError("a pinned plan must be a plan id string", param="tierwise.plan")
    return RequestOptions(policy, pinned)


def _parse_header(value: str) -> dict[str, Any]:
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{POLICY_HEADER} is not valid JSON: {exc}", param="policy") from exc
        if not isinstance(parsed, dict):
            raise InputError(f"{POLICY_HEADER} must be a JSON object", param="policy")
        return parsed
    fields: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, raw = part.partition("=")
        if not sep:
            raise InputError(f"{POLICY_HEADER}: expected key=value, got {part!r}", param="policy")
        key, raw = key.strip(), raw.strip()
        if key.startswith("weights."):
            weights = fields.setdefault("weights", {})
            if not isinstance(weights, dict):
                raise InputError(
                    f"{POLICY_HEADER}: `weights` given both whole and as `weights.*`",
                    param="policy.weights",
                )
            weights[key[8:]] = raw
        else:
            fields[key] = raw
    return fields
