"""A TCP fault proxy for the fault suite: put it between a stage and what it talks to (Kafka,
the Central Node) and turn faults on and off while mail flows.

Faults, as a network gives them:
- latency: each chunk waits this long before it is passed on, in both directions;
- stall: nothing passes either way, connections stay open; what was sent passes on `heal`;
- half-open: the far side is gone without a FIN or RST: what the client sends is swallowed,
  nothing comes back, and those connections stay dead after `heal`, as real ones do;
- refuse: new connections are closed at once;
- `reset()`: every open connection is reset (RST, not FIN).

The proxy runs its own asyncio loop in a thread; its methods are called from the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)  # identity: pairs live in a set
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    dead: bool = False  # half-open: swallows forever
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._flowing = asyncio.Event()
        self._latency_s = 0.0
        self._half_open = False
        self._refuse = False
        self.connections = 0  # accepted so far
        self.port = 0

    # -- control, from the test's thread -------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def latency(self, seconds: float) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_latency_s", seconds)

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def half_open(self) -> None:
        """Every connection now and to come is black-holed until `heal`; those stay dead."""
        self._call(self._black_hole())

    def refuse(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_refuse", True)

    def reset(self) -> int:
        """Reset every open connection; returns how many."""
        return self._call(self._reset_all())

    def heal(self) -> None:
        def heal() -> None:
            self._latency_s, self._half_open, self._refuse = 0.0, False, False
            self._flowing.set()
        self._loop.call_soon_threadsafe(heal)

    @property
    def open_connections(self) -> int:
        return self._call(self._count())

    def _call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- the loop's side -----------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()

    async def _count(self) -> int:
        return len(self._pairs)

    async def _black_hole(self) -> None:
        self._half_open = True
        for pair in self._pairs:
            pair.dead = True

    async def _reset_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            for writer in (pair.client, pair.server):
                _abort_with_rst(writer)
            for task in pair.tasks:
                task.cancel()
        self._pairs.clear()
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._refuse:
            _abort_with_rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _abort_with_rst(writer)
            return
        pair = _Pair(writer, up_writer, dead=self._half_open)
        self._pairs.add(pair)
        pair.tasks = [asyncio.create_task(self._pump(pair, reader, up_writer)),
                      asyncio.create_task(self._pump(pair, up_reader, writer))]

    async def _pump(self, pair: _Pair, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if pair.dead:
                    continue
                await self._flowing.wait()
                if self._latency_s:
                    await asyncio.sleep(self._latency_s)
                if pair.dead:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if not pair.dead:
                # One side closed: close the other (a half-open pair never tells anyone).
                self._pairs.discard(pair)
                for side in (pair.client, pair.server):
                    with contextlib.suppress(Exception):
                        side.close()


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
