"""A small client for a link proxy's control API (used by the CLI, the demo and tests)."""

from __future__ import annotations

from typing import Any

import httpx

from tierwise.errors import InputError, NotFoundError, UpstreamError


class LinkClient:
    def __init__(self, control_url: str, token: str | None, timeout: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=control_url, headers=headers, timeout=timeout)

    def __enter__(self) -> LinkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def show(self) -> dict[str, Any]:
        return self._call("GET", "/v1/link")

    def set(
        self,
        bandwidth: float | str | None = None,
        downlink: float | str | None = None,
        rtt: float | str | None = None,
        loss: float | None = None,
    ) -> dict[str, Any]:
        fields = {"bandwidth": bandwidth, "downlink": downlink, "rtt": rtt, "loss": loss}
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("PUT", "/v1/link", json=body)

    def down(self) -> dict[str, Any]:
        return self._call("POST", "/v1/link/down")

    def up(self) -> dict[str, Any]:
        return self._call("POST", "/v1/link/up")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"link control at {self._http.base_url} unreachable: {exc}"
            ) from exc
        if response.status_code in (400, 422):
            raise InputError(_message(response))
        if response.status_code == 404:
            raise NotFoundError(_message(response))
        if response.status_code >= 300:
            raise UpstreamError(
                f"link control answered {response.status_code}: {_message(response)}",
                status=response.status_code,
            )
        return dict(response.json())


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
