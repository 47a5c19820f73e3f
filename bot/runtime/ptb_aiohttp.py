"""python-telegram-bot's networking on aiohttp instead of httpx (PTB's ``BaseRequest`` hook).

PTB sends through httpx by default. Measured in one process against the fake Bot API, a
sendMessage cost about 1 ms of CPU through PTB's httpx request and 0.25 ms through aiohttp
(docs/PERFORMANCE.md); the bot makes two or three calls per update, so the transport was
the largest single cost of the PTB runtime. PTB documents ``BaseRequest`` as the place to
plug in another HTTP library: everything above it (parameters, RetryAfter on 429, errors by
status, JSON decoding) is still PTB's.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


def _chosen(value: Any, default: float | None) -> float | None:
    """A per-call timeout, or this request's default when PTB passes its DEFAULT_NONE."""
    if value is BaseRequest.DEFAULT_NONE or isinstance(value, type(BaseRequest.DEFAULT_NONE)):
        return default
    return float(value) if value is not None else None


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a connection pool of ``connections``."""

    def __init__(
        self,
        *,
        connections: int = 256,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections)
            self._session = aiohttp.ClientSession(connector=connector)

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("this AiohttpRequest is not initialized")
        read = _chosen(read_timeout, self._read_timeout)
        connect = _chosen(connect_timeout, self._connect_timeout)
        pool = _chosen(pool_timeout, None)
        # aiohttp has no write timeout of its own: a request body is small (uploads are work
        # orders and photos of a few MB), and the read timeout covers a stalled server.
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=pool + connect if pool is not None and connect is not None else None,
            sock_connect=connect,
            sock_read=read,
        )
        body: Any = None
        if request_data is not None:
            files = request_data.multipart_data
            fields = request_data.json_parameters
            if files:
                form = aiohttp.FormData()
                for name, value in fields.items():
                    form.add_field(name, value)
                for name, (filename, content, mime) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                body = form
            else:
                body = fields
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers={"User-Agent": self.USER_AGENT},
                timeout=timeout,
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
