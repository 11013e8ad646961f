"""A small HTTP/1.1 server on asyncio + httptools: keep-alive, pipelining, and the limits a
public endpoint needs (body size checked from the headers before the body is read, a
deadline for each request against slow clients, an idle timeout, graceful draining).

It knows nothing about models: each complete request goes to a `Handler`, which answers
through `Connection.respond`, now or later.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol, cast

import httptools

MAX_PIPELINED = 32  # stop reading from a client that queues more requests than this


@dataclass
class Request:
    method: str = ""
    url: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = True
    started: float = field(default_factory=time.perf_counter)

    @property
    def path(self) -> str:
        return self.url.split(b"?", 1)[0].decode("latin-1")


class Handler(Protocol):
    def handle(self, request: Request, connection: Connection) -> None: ...


@dataclass
class ServerState:
    """Limits and lifecycle flags shared by all connections of one worker."""

    max_body_bytes: int
    request_timeout_s: float
    keepalive_timeout_s: float
    ready: bool = False
    draining: bool = False
    connections: set[Connection] = field(default_factory=set)


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def render_response(status: int, body: bytes, content_type: str, headers: dict[str, str] | None,
                    keep_alive: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
             b"content-type: %s\r\ncontent-length: %d\r\n" % (content_type.encode(), len(body))]
    if headers:
        lines.extend(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers.items())
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


class Connection(asyncio.Protocol):
    """One client connection. Requests on it are answered strictly in order."""

    def __init__(self, state: ServerState, handler: Handler, error_body: Callable[[int, str], bytes]) -> None:
        self.state = state
        self.handler = handler
        self.error_body = error_body
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self._current = Request()
        self._body: list[bytes] = []
        self._body_size = 0
        self._in_message = False
        self._timer: asyncio.TimerHandle | None = None

    # -- connection events -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.state.connections.add(self)
        self._arm(self.state.request_timeout_s, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._disarm()
        self.state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self._fail(400, f"malformed HTTP request: {error}")

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._current = Request()
        self._body, self._body_size = [], 0
        if not self.busy:
            self._arm(self.state.request_timeout_s, self._timed_out)

    def on_url(self, url: bytes) -> None:
        self._current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._current.method = self.parser.get_method().decode("latin-1")
        length = self._current.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.state.max_body_bytes:
            # Refuse before reading a byte of the body.
            self._fail(413, f"request body of {length} bytes is over the {self.state.max_body_bytes}-byte limit")

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        self._body_size += len(body)
        if self._body_size > self.state.max_body_bytes:
            self._fail(413, f"request body is over the {self.state.max_body_bytes}-byte limit")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self.closing:
            return
        request = self._current
        request.body = b"".join(self._body)
        request.keep_alive = self.parser.should_keep_alive()
        self.queue.append(request)
        if len(self.queue) > MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        self._next()

    # -- answering -----------------------------------------------------------

    def _next(self) -> None:
        if self.busy or not self.queue or self.closing:
            return
        self.busy = True
        self._disarm()
        request = self.queue.popleft()
        if self.transport is not None and len(self.queue) == MAX_PIPELINED:
            self.transport.resume_reading()
        self.handler.handle(request, self)

    def respond(self, request: Request, status: int, body: bytes, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> None:
        """Send the answer to `request` (the oldest one in progress) and move on to the next."""
        if self.transport is None or self.transport.is_closing():
            self.busy = False
            return
        keep_alive = request.keep_alive and not self.state.draining
        self.transport.write(render_response(status, body, content_type, headers, keep_alive))
        self.busy = False
        if not keep_alive:
            self.close()
        elif self.queue:
            self._next()
        elif self._in_message:  # the next request is arriving: hold it to the request deadline
            self._arm(self.state.request_timeout_s, self._timed_out)
        else:
            self._arm(self.state.keepalive_timeout_s, self.close)

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot parse or accept: answer it and drop the connection."""
        if self.transport is not None and not self.closing:
            self.transport.write(render_response(status, self.error_body(status, message), "application/json",
                                                 None, keep_alive=False))
        self.close()

    def _timed_out(self) -> None:
        if self.busy:
            return  # the server is working on it; only clients are held to the deadline
        self._fail(408, f"the request was not received within {self.state.request_timeout_s:g} s")

    def close(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.queue and not self._in_message

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
