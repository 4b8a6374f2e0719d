"""API keys: who is calling, which policy and budget apply to them, and what they may read.

``/metrics`` shows every key's remaining budget, so only an admin key (``admin: true``)
or the nodes' shared token (the operator's, as on the nodes' own ``/metrics``) may read it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from tierwise.config import ApiKeySpec, BudgetSpec, CacheSpec, Policy
from tierwise.errors import AuthError, ConfigError, ForbiddenError


@dataclass(frozen=True)
class Caller:
    name: str
    policy: Policy
    budget: BudgetSpec
    cache: CacheSpec = field(default_factory=CacheSpec)
    admin: bool = False


class KeyRing:
    """Holds only SHA-256 digests of the keys, read from the environment at start."""

    def __init__(
        self, specs: list[ApiKeySpec], env: Mapping[str, str], node_token: str | None = None
    ) -> None:
        self._digests: list[tuple[bytes, Caller]] = []
        self._node_token = hashlib.sha256(node_token.encode()).digest() if node_token else None
        for i, spec in enumerate(specs):
            if spec.key_env is not None:
                key = env.get(spec.key_env)
                if not key:
                    raise ConfigError(
                        f"gateway.api_keys[{i}].key_env: environment variable {spec.key_env} "
                        f"holding key {spec.name!r} is not set"
                    )
                digest = hashlib.sha256(key.encode()).digest()
            else:
                assert spec.key_sha256 is not None
                digest = bytes.fromhex(spec.key_sha256)
            self._digests.append(
                (digest, Caller(spec.name, spec.policy, spec.budget, spec.cache, spec.admin))
            )

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing API key: send `Authorization: Bearer <your API key>`")
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        for known, caller in self._digests:
            if hmac.compare_digest(digest, known):
                return caller
        raise AuthError("unknown API key")

    def authorize_metrics(self, authorization: str | None) -> None:
        """Pass the nodes' token or an admin key; refuse any other key with 403."""
        if self._node_token is not None and authorization and authorization.startswith("Bearer "):
            digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
            if hmac.compare_digest(digest, self._node_token):
                return
        if not self.authenticate(authorization).admin:
            raise ForbiddenError(
                "/metrics shows every key's budget: it needs an API key with `admin: true` "
                "in the gateway spec, or the cluster's node token"
            )
