"""An asyncio TCP proxy that EMULATES one network link between two tiers.

For each node on either side of the link the proxy listens on one port and forwards
to that node. Bytes travelling from tier ``a`` to tier ``b`` share the uplink token
bucket and bytes from ``b`` to ``a`` the downlink bucket, whichever side opened the
connection. Each slice of bytes is then held for half the RTT before it is written,
so latency adds to, and does not eat into, the bandwidth. Loss is emulated the way
TCP experiences it: a lost segment (1,460 B) stalls the sender for one extra RTT,
and the stream stays in order. ``set_down()`` aborts open connections and refuses new
ones at once, so callers fail fast rather than hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from dataclasses import dataclass, field
from typing import Literal

from tierwise.config import LinkEmulation
from tierwise.net.token_bucket import TokenBucket, slice_size

Direction = Literal["up", "down"]
SEGMENT_BYTES = 1460
_READ_BYTES = 64 * 1024
_Slice = tuple[float, bytes]  # (when to deliver, on the loop clock; the bytes)


@dataclass(frozen=True)
class Route:
    """Connections to ``listen_port`` are forwarded to ``target``; ``direction`` is the
    direction of the bytes the connecting client sends (``up`` = from tier a to tier b)."""

    target_node: str
    target_host: str
    target_port: int
    direction: Direction
    listen_host: str = "127.0.0.1"
    listen_port: int = 0


@dataclass
class LinkCounters:
    bytes_up: int = 0
    bytes_down: int = 0
    connections_total: int = 0
    connections_refused: int = 0


@dataclass
class LinkSettings:
    """The live, mutable emulation settings of a link."""

    bandwidth: float
    downlink: float
    rtt: float
    loss: float
    online: bool = True

    @classmethod
    def from_spec(cls, spec: LinkEmulation) -> LinkSettings:
        return cls(spec.bandwidth, spec.down_bandwidth, spec.rtt, spec.loss)


@dataclass(eq=False)  # identity-hashed: kept in a set of open connections
class _Connection:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def abort(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()


class LinkProxy:
    """Shapes and forwards TCP traffic for one link. Use ``async with`` or start/stop."""

    def __init__(
        self,
        name: str,
        settings: LinkSettings,
        routes: list[Route],
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.routes = routes
        self.counters = LinkCounters()
        self._buckets = {
            "up": TokenBucket(settings.bandwidth),
            "down": TokenBucket(settings.downlink),
        }
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._rng = rng or random.Random()
        self.bound_ports: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        for route in self.routes:
            server = await asyncio.start_server(
                functools.partial(self._handle, route=route), route.listen_host, route.listen_port
            )
            self._servers.append(server)
            self.bound_ports[route.target_node] = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        handlers = [t for t in self._handlers if not t.done()]
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> LinkProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- live control ------------------------------------------------------

    def update(
        self,
        bandwidth: float | None = None,
        downlink: float | None = None,
        rtt: float | None = None,
        loss: float | None = None,
    ) -> None:
        """Change settings for traffic from now on; ``bandwidth`` alone sets both directions."""
        s = self.settings
        if bandwidth is not None:
            s.bandwidth = bandwidth
            s.downlink = bandwidth if downlink is None else downlink
        elif downlink is not None:
            s.downlink = downlink
        if rtt is not None:
            s.rtt = rtt
        if loss is not None:
            s.loss = loss
        self._buckets["up"].set_rate(s.bandwidth)
        self._buckets["down"].set_rate(s.downlink)

    def set_down(self) -> None:
        self.settings.online = False
        for conn in list(self._connections):
            conn.abort()

    def set_up(self) -> None:
        self.settings.online = True

    # -- forwarding --------------------------------------------------------

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route
    ) -> None:
        if not self.settings.online:
            self.counters.connections_refused += 1
            writer.transport.abort()
            return
        try:
            t_reader, t_writer = await asyncio.open_connection(route.target_host, route.target_port)
        except OSError:
            self.counters.connections_refused += 1
            writer.transport.abort()
            return
        self.counters.connections_total += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        conn = _Connection([writer, t_writer])
        self._connections.add(conn)
        back: Direction = "down" if route.direction == "up" else "up"
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(reader, t_writer, route.direction))
                group.create_task(self._pump(t_reader, writer, back))
        except* (ConnectionError, OSError):
            pass  # one side reset the connection; the finally below tears down both
        except* asyncio.CancelledError:
            pass  # the proxy is stopping; this handler is the root of its task
        finally:
            if self.settings.online:
                _close(conn)
            else:
                conn.abort()
            self._connections.discard(conn)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        """Read, shape and write one direction; delivery runs as its own task so that
        the RTT delay pipelines with the bandwidth limit instead of adding per slice."""
        queue: asyncio.Queue[_Slice | None] = asyncio.Queue()  # None marks the end
        deliver = asyncio.create_task(self._deliver(queue, writer, direction))
        try:
            await self._shape(reader, queue, direction)
        finally:
            await queue.put(None)
            await deliver

    async def _shape(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[_Slice | None],
        direction: Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        bucket = self._buckets[direction]
        while data := await reader.read(_READ_BYTES):
            step = slice_size(bucket.rate)
            for start in range(0, len(data), step):
                piece = data[start : start + step]
                # A lost segment stalls the sender for a retransmission, as in TCP.
                wait = bucket.reserve(len(piece)) + self._loss_delay(len(piece))
                if wait > 0:
                    await asyncio.sleep(wait)
                await queue.put((loop.time() + self.settings.rtt / 2, piece))

    async def _deliver(
        self,
        queue: asyncio.Queue[_Slice | None],
        writer: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, piece = item
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(piece)
            await writer.drain()
            if direction == "up":
                self.counters.bytes_up += len(piece)
            else:
                self.counters.bytes_down += len(piece)
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    def _loss_delay(self, nbytes: int) -> float:
        loss = self.settings.loss
        if loss <= 0:
            return 0.0
        segments = -(-nbytes // SEGMENT_BYTES)
        lost = sum(self._rng.random() < loss for _ in range(segments))
        return lost * max(self.settings.rtt, 0.001)


def _close(conn: _Connection) -> None:
    for writer in conn.writers:
        with contextlib.suppress(Exception):
            writer.close()
