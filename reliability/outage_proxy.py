"""A TCP proxy in front of PostgreSQL that can "go down", so an outage is staged without
touching the machine's real server (which CI and other people share).

``down()`` closes every open connection at once (both sides: the bot sees its connections
reset, the server sees its clients go away and rolls their transactions back) and stops
listening, so new connections are refused (ECONNREFUSED, as with a stopped server);
``up()`` listens again on the same port.

    proxy = DbProxy(5432)
    await proxy.start()                # proxy.port: point DATABASE_URL at it
    await proxy.outage(10.0)           # down, 10 s, up
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class DbProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port``; can refuse and cut connections."""

    def __init__(
        self,
        target_port: int = 5432,
        target_host: str = "127.0.0.1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0  # connections taken while up
        self.cut = 0  # connections closed by down()
        self.outages: list[tuple[float, float]] = []  # (down, up) wall-clock times

    @property
    def is_up(self) -> bool:
        return self.server is not None

    def url_for(self, url: str) -> str:
        """``url`` (a PostgreSQL URL) with host and port replaced by the proxy's."""
        proxied = make_url(url).set(host=self.host, port=self.port)
        return proxied.render_as_string(hide_password=False)

    async def start(self) -> None:
        await self.up()

    async def up(self) -> None:
        if self.server is not None:
            return
        self.server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        self.port = int(self.server.sockets[0].getsockname()[1])
        if self.outages and self.outages[-1][1] == 0.0:
            self.outages[-1] = (self.outages[-1][0], time.time())

    async def down(self) -> None:
        """Stop listening and close every connection in flight."""
        server, self.server = self.server, None
        if server is None:
            return
        self.outages.append((time.time(), 0.0))
        server.close()
        for writer in list(self.writers):
            writer.transport.abort()
            self.cut += 1
        self.writers.clear()
        for task in list(self.pipes):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.pipes, return_exceptions=True)
        self.pipes.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

    async def outage(self, seconds: float) -> tuple[float, float]:
        """Down for ``seconds``, then up; returns (down, up) wall-clock times."""
        await self.down()
        await asyncio.sleep(seconds)
        await self.up()
        return self.outages[-1]

    async def stop(self) -> None:
        await self.down()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.server is None:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        if self.server is None:  # went down while connecting
            client_w.transport.abort()
            server_w.transport.abort()
            return
        self.accepted += 1
        self.writers.update((client_w, server_w))
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w)),
            asyncio.create_task(self._pump(server_r, client_w)),
        ]
        self.pipes.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self.pipes.discard(task)
            for writer in (client_w, server_w):
                self.writers.discard(writer)
                writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
