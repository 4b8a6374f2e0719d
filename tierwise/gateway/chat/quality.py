"""The quality a learned router predicts for each chat model, for ``model: "auto"``.

The router maps the cluster's models to the models it was trained on
(``gateway.router.models``); its chance of a right answer becomes each plan's quality,
which ``min_quality`` and the planner's objective then read.
"""

from __future__ import annotations

from pathlib import Path

from tierwise.config import RouterSpec
from tierwise.errors import ConfigError, TierwiseError
from tierwise.models.base import ChatMessage
from tierwise.routing.predictor import QualityPredictor


class RouterQuality:
    def __init__(self, spec: RouterSpec | None) -> None:
        self._spec = spec
        self._router: QualityPredictor | None = None

    def load(self) -> None:
        """The router named in the spec, checked against the models it maps."""
        spec = self._spec
        if spec is None:
            return
        from tierwise.routing.router import Router

        try:
            router = Router.load(Path(spec.path))
            router.prepare()  # load its encoder now, not on the first request
        except TierwiseError as exc:
            raise ConfigError(f"gateway.router.path: {exc.message}") from exc
        unknown = sorted(set(spec.models.values()) - set(router.models))
        if unknown:
            raise ConfigError(
                f"gateway.router.models: {unknown} are not models of the router at {spec.path}; "
                f"it knows {router.models}"
            )
        self._router = router

    def predict(self, messages: list[ChatMessage]) -> dict[str, float]:
        """Per cluster model, the chance of a right answer to the last user message."""
        if self._router is None or self._spec is None:
            return {}
        users = [m.content for m in messages if m.role == "user"] or [messages[-1].content]
        p = self._router.predict([users[-1]])[0]
        column = {m: i for i, m in enumerate(self._router.models)}
        return {ours: float(p[column[theirs]]) for ours, theirs in self._spec.models.items()}
