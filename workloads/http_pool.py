"""An httpx transport whose connection pool costs O(1) per request, for open-loop load generation.

httpx's default pool (httpcore's ``AsyncConnectionPool``) rescans every pooled connection, with a
readability syscall each, several times per request, and scans them again for each idle one: its
cost per request grows with the number of requests in flight. An open-loop replayer against a slow
server has hundreds in flight, so that cost made the replayer itself fall seconds behind its
schedule at 100 requests/s. This pool keeps idle HTTP/1.1 connections in a LIFO stack: a request
takes the most recently used live one or opens a new one, and the connection returns to the stack
when its response is closed. There is no connection limit (an open loop must not queue requests
on the client), only a bound on how many idle connections are kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import httpx

DEFAULT_MAX_IDLE = 256
_CORE_ERRORS = (httpcore.ProtocolError, httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProxyError,
                httpcore.UnsupportedProtocol, httpcore.ConnectionNotAvailable)
DEFAULT_KEEPALIVE_S = 4.0  # below the usual 5 s server keep-alive, so we close idle sockets first


class LifoPoolTransport(httpx.AsyncBaseTransport):
    def __init__(self, max_idle: int = DEFAULT_MAX_IDLE, keepalive_s: float = DEFAULT_KEEPALIVE_S) -> None:
        self.max_idle = max_idle
        self.keepalive_s = keepalive_s
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._open: set[httpcore.AsyncHTTPConnection] = set()
        self.opened = 0  # connections opened over the transport's life

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = httpcore.Origin(url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80))
        conn = await self._acquire(origin)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        try:
            response = await conn.handle_async_request(core_request)
        except BaseException as exc:  # cancelled (client timeout) or failed: this connection is done
            await self._discard(conn)
            if isinstance(exc, _CORE_ERRORS):
                raise _httpx_error(exc, request) from exc
            raise
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Stream(response, lambda: self._release(origin, conn)),
                              extensions=response.extensions)

    async def _acquire(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        idle = self._idle.get(_key(origin))
        while idle:
            conn = idle.pop()
            if conn.is_idle() and not conn.has_expired():
                return conn
            await self._discard(conn)  # the server closed it, or it sat idle past keep-alive
        conn = httpcore.AsyncHTTPConnection(origin, keepalive_expiry=self.keepalive_s)
        self._open.add(conn)
        self.opened += 1
        return conn

    async def _release(self, origin: httpcore.Origin, conn: httpcore.AsyncHTTPConnection) -> None:
        idle = self._idle.setdefault(_key(origin), [])
        if conn.is_idle() and len(idle) < self.max_idle:
            idle.append(conn)
        else:
            await self._discard(conn)

    async def _discard(self, conn: httpcore.AsyncHTTPConnection) -> None:
        self._open.discard(conn)
        await conn.aclose()

    async def aclose(self) -> None:
        conns = list(self._open)
        self._open.clear()
        self._idle.clear()
        for conn in conns:
            await conn.aclose()


class _Stream(httpx.AsyncByteStream):
    """The response body; closing it hands the connection back to the pool."""

    def __init__(self, response: httpcore.Response, release: Callable[[], Awaitable[None]]) -> None:
        self._response = response
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._response.aiter_stream():
                yield part
        except _CORE_ERRORS as exc:
            raise _httpx_error(exc, None) from exc

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            await self._release()


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return origin.scheme, origin.host, origin.port


def _httpx_error(exc: Exception, request: httpx.Request | None) -> httpx.TransportError:
    """httpcore's exception as httpx's class of the same name (ConnectError, ReadError, ...)."""
    cls = getattr(httpx, type(exc).__name__, httpx.TransportError)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(str(exc) or type(exc).__name__, request=request)
