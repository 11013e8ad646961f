"""The HTTP connection driven in process with bytes and a fake transport, the way uvicorn tests its
protocols: ordering rules a socket test cannot pin down (interim answers, refusals behind
pipelined requests, answers held while the client does not read)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from model_server.app import error_body
from model_server.http import Connection, Request, ServerState


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    @property
    def output(self) -> bytes:
        return b"".join(self.written)


class HeldHandler:
    """Answers only when the test says so (a request the model is still working on)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Request, Connection]] = []

    def handle(self, request: Request, connection: Connection) -> None:
        self.pending.append((request, connection))

    def answer_next(self, body: bytes = b"{}") -> None:
        request, connection = self.pending.pop(0)
        connection.respond(request, 200, body)


def run(test: Callable[[Connection, FakeTransport, HeldHandler], Any]) -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection = Connection(ServerState(max_body_bytes=1024, request_timeout_s=30, keepalive_timeout_s=30),
                                handler, error_body)
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        test(connection, transport, handler)

    asyncio.run(body())


GET = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
EXPECTING = b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"


def test_100_continue_waits_for_the_answers_to_earlier_requests() -> None:
    def check(connection: Connection, transport: FakeTransport, handler: HeldHandler) -> None:
        connection.data_received(GET + EXPECTING)
        assert transport.output == b""  # the GET is still being answered: a 100 now would be taken for its answer
        handler.answer_next(b'{"live":true}')
        assert transport.output.startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.output.endswith(b'{"live":true}HTTP/1.1 100 Continue\r\n\r\n')
        connection.data_received(b"{}")
        assert len(handler.pending) == 1 and handler.pending[0][0].body == b"{}"

    run(check)


def test_100_continue_is_immediate_on_an_idle_connection() -> None:
    def check(connection: Connection, transport: FakeTransport, handler: HeldHandler) -> None:
        connection.data_received(EXPECTING)
        assert transport.output == b"HTTP/1.1 100 Continue\r\n\r\n"

    run(check)


def test_a_body_sent_without_waiting_for_100_gets_no_100() -> None:
    def check(connection: Connection, transport: FakeTransport, handler: HeldHandler) -> None:
        connection.data_received(GET + EXPECTING + b"{}")
        handler.answer_next()
        handler.answer_next()
        assert b"100 Continue" not in transport.output

    run(check)


@pytest.mark.parametrize(("bad", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
])
def test_a_refusal_behind_a_pipelined_request_waits_its_turn_and_closes(bad: bytes, status: int) -> None:
    def check(connection: Connection, transport: FakeTransport, handler: HeldHandler) -> None:
        connection.data_received(GET + bad)
        assert transport.output == b"" and not transport.reading  # nothing more is read
        handler.answer_next()
        assert transport.output.startswith(b"HTTP/1.1 200 ")
        assert f"HTTP/1.1 {status} ".encode() in transport.output
        assert transport.output.index(b"HTTP/1.1 200 ") < transport.output.index(f"HTTP/1.1 {status} ".encode())
        assert transport.closed

    run(check)


def test_answers_wait_while_the_client_does_not_read() -> None:
    def check(connection: Connection, transport: FakeTransport, handler: HeldHandler) -> None:
        connection.pause_writing()
        connection.data_received(GET * 3)
        assert handler.pending == [] and not transport.reading
        connection.resume_writing()
        assert len(handler.pending) == 1 and transport.reading

    run(check)


def test_many_pipelined_requests_answered_at_once_do_not_recurse() -> None:
    """A handler that answers inside handle() used to recurse once per queued request."""

    class Immediate(HeldHandler):
        def handle(self, request: Request, connection: Connection) -> None:
            connection.respond(request, 200, b"{}")

    async def body() -> None:
        connection = Connection(ServerState(max_body_bytes=1024, request_timeout_s=30, keepalive_timeout_s=30),
                                Immediate(), error_body)
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(GET * 5000)
        assert transport.output.count(b"HTTP/1.1 200 ") == 5000

    asyncio.run(body())


# -- the rest of the connection's rules, byte by byte ---------------------------------------------------

def connect(state: ServerState, handler: HeldHandler) -> tuple[Connection, FakeTransport]:
    connection = Connection(state, handler, error_body)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def in_loop(test: Callable[[], Any]) -> Any:
    async def body() -> Any:
        return test()

    return asyncio.run(body())


def state(**limits: Any) -> ServerState:
    return ServerState(**{"max_body_bytes": 1024, "request_timeout_s": 30, "keepalive_timeout_s": 30, **limits})


def test_a_response_is_rendered_exactly() -> None:
    from model_server.http import render_response

    assert render_response(200, b'{"a":1}', "application/json", {"x-id": "7"}, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\nx-id: 7\r\n\r\n"
        b'{"a":1}')
    assert render_response(503, b"", "text/plain", None, keep_alive=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n")


def test_a_request_reaches_the_handler_whole() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, _ = connect(state(), handler)
        connection.data_received(b"POST /v2/models/iris/infer?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\n"
                                 b"Content-Length: 4\r\n\r\nbo")
        assert handler.pending == []
        connection.data_received(b"dy")
        ((request, _),) = handler.pending
        assert (request.method, request.path, request.body) == ("POST", "/v2/models/iris/infer", b"body")
        assert request.headers["content-type"] == "a/b" and request.keep_alive

    in_loop(check)


@pytest.mark.parametrize(("request_bytes", "keeps"), [
    (b"GET / HTTP/1.1\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
])
def test_keep_alive_follows_the_request(request_bytes: bytes, keeps: bool) -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(request_bytes)
        handler.answer_next()
        assert (b"connection: close" in transport.output) is not keeps
        assert transport.closed is not keeps

    in_loop(check)


def test_while_draining_every_answer_closes_its_connection() -> None:
    def check() -> None:
        handler = HeldHandler()
        server_state = state()
        connection, transport = connect(server_state, handler)
        connection.data_received(GET)
        server_state.draining = True
        handler.answer_next()
        assert b"connection: close" in transport.output and transport.closed

    in_loop(check)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"POST /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413),
    (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n", 413),
    (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nExpect: nonsense\r\n\r\n", 417),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
])
def test_refusals_answer_once_and_close(request_bytes: bytes, status: int) -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(request_bytes)
        assert transport.output.startswith(f"HTTP/1.1 {status} ".encode())
        assert transport.output.count(b"HTTP/1.1 ") == 1 and b"connection: close" in transport.output
        assert transport.closed and handler.pending == []
        body = transport.output.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"]
        connection.data_received(GET)  # nothing more is read
        assert transport.output.count(b"HTTP/1.1 ") == 1

    in_loop(check)


def test_an_upgrade_request_is_answered_as_plain_http_and_the_connection_closes() -> None:
    """httptools stops parsing at an Upgrade request; the client still gets exactly one answer."""
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00")
        assert len(handler.pending) == 1 and len(connection.queue) == 1 and not transport.closed
        handler.answer_next()
        handler.answer_next()
        assert transport.output.count(b"HTTP/1.1 ") == 2 and b" 400 " not in transport.output
        assert transport.output.endswith(b"{}") and transport.closed

    in_loop(check)


def test_an_http_1_0_expect_is_ignored() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert transport.output == b""

    in_loop(check)


def test_too_many_pipelined_requests_pause_reading_until_the_queue_drains() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET * 40)
        assert not transport.reading  # one in the handler, 39 queued: more than 32
        for _ in range(6):
            handler.answer_next()
        assert not transport.reading and len(connection.queue) == 33
        handler.answer_next()
        assert transport.reading and len(connection.queue) == 32

    in_loop(check)


def test_at_the_connection_limit_the_idle_connection_makes_room_and_a_busy_one_does_not() -> None:
    def check() -> None:
        handler = HeldHandler()
        server_state = state(max_connections=1)
        idle, idle_transport = connect(server_state, handler)
        newcomer, newcomer_transport = connect(server_state, handler)
        assert idle_transport.closed and not newcomer_transport.closed
        idle.connection_lost(None)
        assert server_state.connections == {newcomer}
        newcomer.data_received(GET)  # now busy
        _, refused_transport = connect(server_state, handler)
        assert refused_transport.output.startswith(b"HTTP/1.1 503 ") and refused_transport.closed
        assert b"limit of 1 connections per worker" in refused_transport.output

    in_loop(check)


def test_an_answer_to_a_closed_connection_is_dropped() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET)
        transport.closed = True
        handler.answer_next()
        assert transport.output == b"" and not connection.busy

    in_loop(check)


def test_a_client_that_never_reads_is_aborted_at_the_deadline() -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(request_timeout_s=0.05), handler)
        connection.pause_writing()
        await asyncio.sleep(0.2)
        assert transport.aborted and connection.closing

    asyncio.run(body())


def test_a_client_that_sends_nothing_gets_408() -> None:
    async def body() -> None:
        _, transport = connect(state(request_timeout_s=0.05), HeldHandler())
        await asyncio.sleep(0.2)
        assert transport.output.startswith(b"HTTP/1.1 408 ") and transport.closed
        assert b"not received within 0.05 s" in transport.output

    asyncio.run(body())


def test_the_server_working_on_a_request_is_not_a_slow_client() -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(request_timeout_s=0.05), handler)
        connection.data_received(GET)
        await asyncio.sleep(0.2)
        assert transport.output == b"" and not transport.closed
        handler.answer_next()
        assert transport.output.startswith(b"HTTP/1.1 200 ")

    asyncio.run(body())


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout() -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(keepalive_timeout_s=0.05), handler)
        connection.data_received(GET)
        handler.answer_next()
        assert connection.idle and not transport.closed
        await asyncio.sleep(0.2)
        assert transport.closed and transport.output.count(b"HTTP/1.1 ") == 1  # closed quietly

    asyncio.run(body())
