"""Measure a path's real throughput with a bulk transfer over TCP.

:class:`BulkServer` speaks a 9-byte command protocol: ``b"U" + uint64 n`` means "I will
upload n bytes; answer ``b"K"`` once you have them all", and ``b"D" + uint64 n`` means
"send me n bytes". :func:`measure` times one such transfer from the client's side.
Used to check the link proxy's accuracy, and by ``tierwise bench runtime``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Literal

_CMD = struct.Struct("<cQ")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Measurement:
    direction: str
    nbytes: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.nbytes / self.seconds


class BulkServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> BulkServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while header := await reader.readexactly(_CMD.size):
                kind, n = _CMD.unpack(header)
                if kind == b"U":
                    await reader.readexactly(n)
                    writer.write(b"K")
                elif kind == b"D":
                    block = b"\0" * _CHUNK
                    for start in range(0, n, _CHUNK):
                        writer.write(block[: min(_CHUNK, n - start)])
                        await writer.drain()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def measure(
    host: str, port: int, nbytes: int, direction: Literal["up", "down"]
) -> Measurement:
    """Move ``nbytes`` up (client → server) or down and return how long it took."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        started = time.perf_counter()
        if direction == "up":
            writer.write(_CMD.pack(b"U", nbytes))
            block = b"\0" * _CHUNK
            for start in range(0, nbytes, _CHUNK):
                writer.write(block[: min(_CHUNK, nbytes - start)])
                await writer.drain()
            await reader.readexactly(1)
        else:
            writer.write(_CMD.pack(b"D", nbytes))
            await writer.drain()
            await reader.readexactly(nbytes)
        return Measurement(direction, nbytes, time.perf_counter() - started)
    finally:
        writer.close()


async def measure_link_rate(
    bandwidth: float, downlink: float, direction: Literal["up", "down"], seconds: float = 2.0
) -> Measurement:
    """Push about ``seconds`` worth of traffic through a fresh link proxy and time it."""
    from tierwise.net.link_proxy import LinkProxy, LinkSettings, Route

    rate = bandwidth if direction == "up" else downlink
    async with BulkServer() as server:
        route = Route("bulk", server.host, server.port, "up")
        async with LinkProxy(
            "probe", LinkSettings(bandwidth, downlink, 0.0, 0.0), [route]
        ) as proxy:
            port = proxy.bound_ports["bulk"]
            return await measure(server.host, port, int(rate * seconds), direction)
