"""TCP proxies for tests of network trouble (after asyncpg's `_testbase` connection-cutting proxy).

`Proxy` relays every connection to one upstream server and keeps the bookkeeping (listening,
tracking the open connections, closing them all on exit); a test's own proxy overrides
`_before_connect` (to delay a connection) or `_relay` (to look at or withhold what passes).
`CuttingProxy` can cut every connection passing through it — a network failure on demand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               keep: Callable[[bytes], bool] | None = None) -> None:
    """Copy `reader` to `writer` until either end goes, then abort `writer` (so that the other
    direction ends too). `keep(chunk)`, when given, sees every chunk and says whether it passes."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            if keep is not None and not keep(data):
                continue
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class Proxy:
    """`async with Proxy(host, port) as proxy:` — connect to `127.0.0.1:proxy.port` instead."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def _drop(self) -> None:
        """Abort every open connection, both sides (new ones still work)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _before_connect(self) -> None:
        """Called as a client connects, before the proxy connects upstream."""

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Pass both directions on until either side hangs up."""
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        writers = [writer]
        self._writers.add(writer)
        try:
            await self._before_connect()
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
            except OSError:
                return
            writers.append(up_writer)
            self._writers.add(up_writer)
            await self._relay(reader, writer, up_reader, up_writer)
        finally:
            self._handlers.discard(task)
            for w in writers:
                self._writers.discard(w)
                w.transport.abort()


class CuttingProxy(Proxy):
    """`async with CuttingProxy(host, port) as proxy:` — connect to `proxy.port` instead;
    `proxy.cut()` drops every open connection (new ones still work)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.cuts = 0

    async def __aenter__(self) -> CuttingProxy:
        await super().__aenter__()
        return self

    def cut(self) -> None:
        self.cuts += 1
        self._drop()


class StallingProxy(Proxy):
    """`proxy.stall()`: the connections open now stop passing bytes, without closing — a dead
    network or a hung server as the client sees it. Connections made after still work."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._generation = 0
        self.stalls = 0

    async def __aenter__(self) -> StallingProxy:
        await super().__aenter__()
        return self

    def stall(self) -> None:
        self.stalls += 1
        self._generation += 1

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        born = self._generation

        def alive(chunk: bytes) -> bool:
            return self._generation == born

        await asyncio.gather(pipe(reader, up_writer, alive), pipe(up_reader, writer, alive), return_exceptions=True)


class ClosingProxy(CuttingProxy):
    """`proxy.close_for_good()`: every connection is cut and new ones are refused — a database
    that is gone."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.closed = False

    async def __aenter__(self) -> ClosingProxy:
        await super().__aenter__()
        return self

    def close_for_good(self) -> None:
        self.closed = True
        self.cut()

    async def _before_connect(self) -> None:
        if self.closed:
            raise ConnectionRefusedError("closed for good")
