"""API keys: who is calling, which policy and budget apply to them."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from tierwise.config import ApiKeySpec, BudgetSpec, CacheSpec, Policy
from tierwise.errors import AuthError, ConfigError


@dataclass(frozen=True)
class Caller:
    name: str
    policy: Policy
    budget: BudgetSpec
    cache: CacheSpec = field(default_factory=CacheSpec)


class KeyRing:
    """Holds only SHA-256 digests of the keys, read from the environment at start."""

    def __init__(self, specs: list[ApiKeySpec], env: Mapping[str, str]) -> None:
        self._digests: list[tuple[bytes, Caller]] = []
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
            self._digests.append((digest, Caller(spec.name, spec.policy, spec.budget, spec.cache)))

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing API key: send `Authorization: Bearer <your API key>`")
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        for known, caller in self._digests:
            if hmac.compare_digest(digest, known):
                return caller
        raise AuthError("unknown API key")
