"""A small HTTP/1.1 server on asyncio + httptools: keep-alive, pipelining, and the limits a
public endpoint needs, modelled on nginx, uvicorn and Go's net/http:

- the request line and the header section are bounded (414, 431), and the body size is checked
  from the headers before the body is read (413); `Expect: 100-continue` is answered with
  `100 Continue` when the request can be taken, or with its final answer (413, 417) at once;
- every request has a deadline against slow clients (408), idle keep-alive connections a timeout;
- a worker holds at most `max_connections`: at the limit it closes its oldest idle connection
  to make room, and when none is idle it answers 503 and closes;
- backpressure both ways: it stops reading from a client that pipelines too much, and stops
  answering (and reading) while a client does not read what it was sent;
- malformed framing (conflicting Content-Length and Transfer-Encoding, a bad chunk size, a bad
  request line) is a 400 and a closed connection, never a desynchronised stream;
- graceful draining.

It knows nothing about models: each complete request goes to a `Handler`, which answers
through `Connection.respond`, now or later. The request being received lives in a few fields of
its connection until it is complete, when it becomes a `Request` (httptools calls back once per
header: no object is made per request on the way), and one small flow-control object
(flow_control.py), as in uvicorn (protocols/http/flow_control.py), decides when the connection
reads. Under 500 lines: the connection's state machine reads best whole.
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

from model_server.flow_control import FlowControl, PauseReason

MAX_PIPELINED = 32  # stop reading from a client that queues more requests than this
# The request line (414 above it) and the whole header section (431), as nginx's default
# large_client_header_buffers (4 x 8 KiB) and uvicorn's 16 KiB incomplete-event limit.
MAX_REQUEST_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_FIELDS = 100
# Stop answering a client whose unread responses pass this, until it has read them down to a quarter.
WRITE_BUFFER_HIGH_WATER = 256 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TIMER_RESOLUTION_S = 0.001  # uvloop's clock and timers count whole milliseconds


@dataclass(slots=True)
class Request:
    method: str = ""
    url: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    keep_alive: bool = True
    started: float = field(default_factory=time.perf_counter)
    _path: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def path(self) -> str:  # read by routing, the access log and handlers: split once
        path = self._path
        if path is None:
            path = self._path = self.url.split(b"?", 1)[0].decode("latin-1")
        return path


class Handler(Protocol):
    def handle(self, request: Request, connection: Connection) -> None: ...


@dataclass
class ServerState:
    """Limits, lifecycle flags and request counts shared by all connections of one worker."""

    max_body_bytes: int
    request_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int = 1024
    ready: bool = False
    draining: bool = False
    connections: set[Connection] = field(default_factory=set)
    # Requests taken in (complete, and handed on) and answered: the difference, when the worker
    # stops, is what it took in and never answered (the shutdown deadline cut it off, or the client left).
    requests_taken: int = 0
    requests_answered: int = 0


# The methods httptools parses, decoded once.
_METHODS = {method.encode(): method for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


# The status line and content-type of each (status, content type) answered, made once.
_HEADS: dict[tuple[int, str], bytes] = {}


def _head(status: int, content_type: str) -> bytes:
    head = _HEADS.get((status, content_type))
    if head is None:
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: " % (
            status, _REASONS.get(status, b"Unknown"), content_type.encode())
        if len(_HEADS) < 256:  # content types come from the server's code, but stay bounded
            _HEADS[(status, content_type)] = head
    return head


def render_response(status: int, body: bytes, content_type: str, headers: dict[str, str] | None,
                    keep_alive: bool, for_head: bool = False) -> bytes:
    """The response's bytes. One to a HEAD request has the headers the body would have, content-length
    included, and no body (RFC 9110, section 9.3.2)."""
    if keep_alive and not headers and not for_head:  # the common answer, in one step
        return b"%s%d\r\n\r\n%s" % (_head(status, content_type), len(body), body)
    lines = [_head(status, content_type), b"%d\r\n" % len(body)]
    if headers:
        lines.extend(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers.items())
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if not for_head:
        lines.append(body)
    return b"".join(lines)


class Connection(asyncio.Protocol):
    """One client connection. Requests on it are answered strictly in order."""

    def __init__(self, state: ServerState, handler: Handler, error_body: Callable[[str], bytes]) -> None:
        self.state = state
        self.handler = handler
        self.error_body = error_body
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl  # made with the transport, in connection_made
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self._in_message = False  # from a request's first byte to its last
        self._messages_begun = 0
        self._messages_completed = 0
        self._driving = False
        # A request refused (parse error or limit), or one switching protocols: nothing after it is
        # parsed; a refusal's answer waits for the answers to the requests before it, then the
        # connection closes.
        self.refused = False
        self._refusal: bytes | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the loop's timer fires
        self._deadline: float | None = None  # when the armed callback is due, if one is
        self._on_deadline: Callable[[], None] = self.close
        self.last_active = time.monotonic()
        self._begin_request()
        self._completed: Request | None = None  # the request the last complete message made, if taken in

    def _begin_request(self) -> None:
        """The request being received, from its first byte."""
        self._started = time.perf_counter()
        self._url = b""
        self._method = ""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        # Complete header fields, counted exactly as httptools hands them over.
        self._header_bytes = 0
        self._header_fields = 0
        # Between the start of a request and the end of its headers: httptools buffers a header value
        # until it is complete, so what arrives in this phase is also counted as it arrives.
        self._in_head = True
        self._head_bytes_read = 0
        # A `100 Continue` owed to this request, sent once the answers to earlier requests are out.
        self._continue_owed = False

    # -- connection events -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.flow = FlowControl(self.transport)
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_WATER)
        if len(self.state.connections) >= self.state.max_connections and not self._make_room():
            self._fail(503, f"the server holds its limit of {self.state.max_connections} connections per worker; "
                            "retry shortly")
            return
        self.state.connections.add(self)
        self._arm(self.state.request_timeout_s, self._timed_out)

    def _make_room(self) -> bool:
        """At the connection limit: close the longest-idle connection, if any is idle."""
        idle = [connection for connection in self.state.connections if connection.idle and not connection.closing]
        if not idle:
            return False
        min(idle, key=lambda connection: connection.last_active).close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self._stop_timer()
        self.state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.refused:
            return
        in_head_before = self._in_head
        begun_before, completed_before = self._messages_begun, self._messages_completed
        try:
            self.parser.feed_data(data)
            # A request that began in this chunk and is still arriving is held to the request deadline from
            # now, unless an answer is being worked on or waits for the client to read (then the answer's
            # sending arms it). Armed here, not at each request's first byte: most requests arrive whole.
            if (self._in_message and self._messages_begun != begun_before and not self.busy
                    and not self.flow.writing_paused and not self.refused):
                self._arm(self.state.request_timeout_s, self._timed_out)
            # A chunk that holds nothing but the current request's head counts in full: it began
            # inside that head, or began that request with no other request ending in it. (Where a
            # request begins inside a chunk is not known; such a head counts from its next chunk.)
            # The fields now describe the request this chunk ends in.
            if self._in_head and not self.refused and (
                    (in_head_before and self._messages_begun == begun_before) or (
                    self._messages_begun == begun_before + 1 and self._messages_completed == completed_before)):
                self._head_bytes_read += len(data)
                if self._head_bytes_read > MAX_HEADER_BYTES:
                    self._fail(431, self._header_limit_message())
        except httptools.HttpParserUpgrade:
            self._end_at_upgrade()
        except httptools.HttpParserError as error:
            if not self.refused:  # a limit raising from a callback has already refused it
                self._fail(400, f"malformed HTTP request: {error}")

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._begin_request()
        self._completed = None
        self._messages_begun += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE_BYTES:
            self._fail(414, f"the request target is over the {MAX_REQUEST_LINE_BYTES}-byte limit")
            raise httptools.HttpParserCallbackError("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools may deliver a name or value in pieces: count every byte, and a field per name.
        self._header_bytes += len(name) + len(value)
        if name:
            self._header_fields += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_fields > MAX_HEADER_FIELDS:
            self._fail(431, self._header_limit_message())
            raise httptools.HttpParserCallbackError("header section too large")
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    @staticmethod
    def _header_limit_message() -> str:
        return f"the request's headers are over the limit of {MAX_HEADER_BYTES} bytes and {MAX_HEADER_FIELDS} fields"

    def on_headers_complete(self) -> None:
        self._in_head = False
        method = self.parser.get_method()
        self._method = _METHODS.get(method) or method.decode("latin-1")
        headers = self._headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.state.max_body_bytes:
            # Refuse before reading a byte of the body (with Expect: 100-continue, before it is sent).
            self._fail(413, f"request body of {length} bytes is over the {self.state.max_body_bytes}-byte limit")
            return
        expectation = headers.get("expect")
        # HTTP/1.0 has no 100 Continue: servers ignore Expect there (RFC 9110, section 10.1.1).
        if expectation is not None and self.parser.get_http_version() != "1.0":
            if expectation.strip().lower() != "100-continue":
                self._fail(417, f"Expect: {expectation} cannot be met; only 100-continue is supported")
                return
            self._continue_owed = True
            self._send_continue()

    def on_body(self, body: bytes) -> None:
        if self.closing or self.refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.state.max_body_bytes:
            self._fail(413, f"request body is over the {self.state.max_body_bytes}-byte limit")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._messages_completed += 1
        self._continue_owed = False  # the body came without it
        if self.closing or self.refused:
            return
        request = self._completed = Request(self._method, self._url, self._headers, b"".join(self._body),
                                            self.parser.should_keep_alive(), self._started)
        queue = self.queue
        queue.append(request)
        self.state.requests_taken += 1
        if len(queue) > MAX_PIPELINED:
            self.flow.pause(PauseReason.PIPELINED)
        self._next()

    # -- answering -----------------------------------------------------------

    def _send_continue(self) -> None:
        """An interim answer belongs to the request being received: send it only once every earlier
        request has its final answer, or the client would take it for theirs."""
        if self._continue_owed and not self.busy and not self.queue and self.transport is not None:
            self._continue_owed = False
            self.transport.write(CONTINUE)

    def _next(self) -> None:
        """Hand queued requests to the handler, one at a time. A loop, not recursion: a handler that
        answers at once calls `respond`, which asks for the next request while this loop runs."""
        if self._driving:
            return
        self._driving = True
        queue = self.queue
        flow = self.flow
        try:
            while not self.busy and queue and not self.closing and not flow.writing_paused:
                self.busy = True
                self._disarm()  # the server is working on it: no request deadline
                request = queue.popleft()
                if not flow.reading and len(queue) <= MAX_PIPELINED:
                    flow.resume(PauseReason.PIPELINED)
                self.handler.handle(request, self)
        finally:
            self._driving = False

    def respond(self, request: Request, status: int, body: bytes, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> None:
        """Send the answer to `request` (the oldest one in progress) and move on to the next."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.busy = False
            return
        keep_alive = request.keep_alive and not self.state.draining
        transport.write(render_response(status, body, content_type, headers, keep_alive,
                                        for_head=request.method == "HEAD"))
        self.state.requests_answered += 1
        self.busy = False
        # Not the loop's clock: it counts whole milliseconds, and the longest-idle connection must be told
        # from one that went idle a moment later.
        self.last_active = time.monotonic()
        if not keep_alive:
            self.close()
        elif not self.flow.writing_paused:  # else the write deadline runs until the client reads
            self._move_on()

    def _move_on(self) -> None:
        """After an answer has gone out (or the client has read it): the next request, the refusal
        owed behind it, the deadline of the request arriving (and its 100 Continue), or the
        keep-alive wait."""
        assert self.transport is not None
        if self.queue:
            self._next()
        elif self._refusal is not None:
            self.transport.write(self._refusal)
            self.close()
        elif self._in_message:  # the next request is arriving: hold it to the request deadline
            self._arm(self.state.request_timeout_s, self._timed_out)
            self._send_continue()
        else:
            self._arm(self.state.keepalive_timeout_s, self.close)

    # -- backpressure on writes (asyncio calls these around the write buffer's limits) --------

    def pause_writing(self) -> None:
        """The client is not reading: stop answering, and stop reading requests it cannot take in.
        It gets the request deadline to read its answers down (net/http's write timeout), else it
        is dropped: a client that never reads must not hold a connection and its buffer forever."""
        self.flow.pause(PauseReason.CLIENT_NOT_READING)
        self._arm(self.state.request_timeout_s, self.abort)

    def resume_writing(self) -> None:
        self.flow.resume(PauseReason.CLIENT_NOT_READING)
        if self.transport is None or self.closing:
            return
        self._disarm()
        # Whatever an answer would have moved on to while the client was not reading: a refusal owed
        # behind the answers, or the 100 Continue of the request arriving, go out now.
        if not self.busy:
            self._move_on()

    def _fail(self, status: int, message: str) -> None:
        """A request we cannot parse or accept: answer it, after the requests before it, and drop
        the connection (what follows on the stream cannot be trusted to be framed right)."""
        if self.refused or self.closing:
            return
        self.refused = True
        self._continue_owed = False
        answer = render_response(status, self.error_body(message), "application/json", None,
                                 keep_alive=False)
        if self.busy or self.queue:
            self._refusal = answer
            self.flow.pause(PauseReason.REFUSED)
            return
        if self.transport is not None:
            self.transport.write(answer)
        self.close()

    def _end_at_upgrade(self) -> None:
        """httptools stops parsing after a request asking to switch protocols (a CONNECT, or an
        Upgrade header), once that request is complete: its body, if any, counts as the other
        protocol. A server may ignore Upgrade (RFC 9110, section 7.8): answer that request as plain
        HTTP, then close, since what follows it on the stream is not HTTP/1.1."""
        self.refused = True  # nothing more is parsed
        if self.busy or self.queue:
            if self._completed is not None:  # the upgrade request, the last one taken in
                self._completed.keep_alive = False
        else:
            self.close()

    def _timed_out(self) -> None:
        if self.busy:
            return  # the server is working on it; only clients are held to the deadline
        self._fail(408, f"the request was not received within {self.state.request_timeout_s:g} s")

    def abort(self) -> None:
        """Drop the connection without flushing what the client would not read."""
        self.closing = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closing = True
        self._stop_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.queue and not self._in_message and not self.flow.writing_paused

    # The connection's one deadline. Arming and disarming it happen two or three times per request, so
    # they only note the deadline; the loop's timer is made again only when it would fire too late,
    # and a timer that fires before the deadline (it was moved later) is re-armed for the rest.

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        self._on_deadline = callback
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._deadline_reached)
            self._timer_at = deadline

    def _disarm(self) -> None:
        self._deadline = None

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_reached(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        # Moved later since this timer was made. A millisecond's slack: uvloop's clock and its timers
        # have a resolution of 1 ms, so a deadline less than that ahead would be re-armed with no delay,
        # again and again, until the clock ticks (call_later fired up to that early too).
        if deadline - self.loop.time() >= TIMER_RESOLUTION_S:
            self._timer = self.loop.call_at(deadline, self._deadline_reached)
            self._timer_at = deadline
            return
        self._deadline = None
        self._on_deadline()
