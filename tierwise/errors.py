"""The one exception root of tierwise.

Every error tierwise raises on purpose derives from :class:`TierwiseError`.
Third-party errors are translated at the boundary with ``raise Ours(...) from exc``.

    TierwiseError
     ├── ConfigError             a cluster spec or setting is invalid (names the field)
     ├── DependencyMissingError  an optional package is absent (names what to install)
     ├── ClusterError            a local cluster process failed to start or died
     ├── InputError              a request's input is invalid                     → 400
     │    ├── WireFormatError    undecodable tensor bytes                         → 400
     │    ├── ImageDecodeError   undecodable image bytes                          → 400
     │    └── InvalidBodyError   a body that parses but breaks the schema         → 422
     ├── AuthError               missing or wrong bearer token                    → 401
     ├── ForbiddenError          a known key without the right to this endpoint   → 403
     ├── NotFoundError           unknown model, stage, node or link               → 404
     ├── PayloadTooLargeError    a body, or a decoded image, over a limit         → 413
     ├── NoFeasiblePlan          no plan meets the request's hard constraints     → 422
     ├── BudgetExceeded          only paid plans could serve, and the budget is spent → 429
     ├── ModelError              a model failed while running                     → 500
     └── UpstreamError           another node or remote API failed                → 502

The HTTP status of each class lives on the class (``http_status``), so the
mapping from exceptions to responses is defined here and nowhere else.
"""

from __future__ import annotations


class TierwiseError(Exception):
    """Root of all tierwise errors. ``code`` is a stable machine-readable name."""

    http_status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        #: set once the gateway's ledger holds a record of the request this ended, so the
        #: last-chance recording at the HTTP edge does not write a second one
        self.recorded = False


class ConfigError(TierwiseError):
    code = "invalid_config"


class DependencyMissingError(TierwiseError):
    code = "dependency_missing"

    def __init__(self, package: str, install: str, purpose: str) -> None:
        super().__init__(
            f"{package} is not installed; it is needed for {purpose}. Run `{install}`."
        )
        self.package = package
        self.install = install


class ClusterError(TierwiseError):
    code = "cluster_error"


class InputError(TierwiseError):
    http_status = 400
    code = "invalid_request"


class WireFormatError(InputError):
    code = "invalid_tensor"


class ImageDecodeError(InputError):
    code = "invalid_image"


class InvalidBodyError(InputError):
    """The body parsed, but a field breaks the schema (as FastAPI's own 422s)."""

    http_status = 422
    code = "invalid_body"


class AuthError(TierwiseError):
    http_status = 401
    code = "invalid_token"


class ForbiddenError(TierwiseError):
    http_status = 403
    code = "forbidden"


class NotFoundError(TierwiseError):
    http_status = 404
    code = "not_found"


class PayloadTooLargeError(TierwiseError):
    http_status = 413
    code = "payload_too_large"


class NoFeasiblePlan(TierwiseError):
    """Nothing satisfies the hard constraints: the answer is a clear 4xx, not a hang."""

    http_status = 422
    code = "no_feasible_plan"


class BudgetExceeded(TierwiseError):
    http_status = 429
    code = "budget_exceeded"


class UnavailableError(TierwiseError):
    """A part of this process is not ready, or failed to start; retrying later may help."""

    http_status = 503
    code = "unavailable"


class ModelError(TierwiseError):
    http_status = 500
    code = "model_error"


class UpstreamError(TierwiseError):
    """Another node or API failed. ``status`` and ``remote_code`` carry its own answer,
    so callers can react to what went wrong there (errors cross tiers as data)."""

    http_status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        remote_code: str | None = None,
        param: str | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.status = status
        self.remote_code = remote_code
        self.node = node
