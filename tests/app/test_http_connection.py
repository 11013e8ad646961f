"""The HTTP connection driven in process with bytes and a fake transport, the way uvicorn tests its
protocols: ordering rules a socket test cannot pin down (interim answers, refusals behind
pipelined requests, answers held while the client does not read)."""

from __future__ import annotations

import asyncio
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
