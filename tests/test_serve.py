"""The servers tierwise starts (nodes, gateway, link control) share one uvicorn setup."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from tierwise.runtime.serve import KEEP_ALIVE_S, uvicorn_config
from tierwise.runtime.state import free_port

#: How long httpx keeps an idle pooled connection by default; a server must keep its end
#: open longer, or a request sent as the server closes it is lost.
HTTPX_POOL_EXPIRY_S = httpx.Limits().keepalive_expiry or 0.0


async def _hello(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def test_an_idle_connection_outlives_a_clients_pool_expiry() -> None:
    assert KEEP_ALIVE_S > HTTPX_POOL_EXPIRY_S
    port = free_port("127.0.0.1", set())
    server = uvicorn.Server(uvicorn_config(_hello, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "the server did not start within 10 s"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
            conn.sendall(request)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(HTTPX_POOL_EXPIRY_S + 1)  # idle past the client's pool expiry
            conn.sendall(request)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200"), "the server closed it"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
