"""The HTTP connection driven in process with bytes and a fake transport (tests/support/connection.py):
ordering rules a socket test cannot pin down (interim answers, refusals behind pipelined requests,
answers held while the client does not read), timers and the connection limit. Past 400 lines,
on purpose: every in-process rule of the connection's state machine, beside the others it
interacts with."""

from __future__ import annotations

import asyncio
import json

import pytest

from model_server.http import WRITE_BUFFER_HIGH_WATER, render_response
from tests.support.connection import GET, HeldHandler, ImmediateHandler, connect, in_loop, state

EXPECTING = b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"


def test_100_continue_waits_for_the_answers_to_earlier_requests() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + EXPECTING)
        assert transport.output == b""  # the GET is still being answered: a 100 now would be taken for its answer
        handler.answer_next(b'{"live":true}')
        assert transport.output.startswith(b"HTTP/1.1 200 OK\r\n")
        assert transport.output.endswith(b'{"live":true}HTTP/1.1 100 Continue\r\n\r\n')
        connection.data_received(b"{}")
        assert len(handler.pending) == 1 and handler.pending[0][0].body == b"{}"

    in_loop(check)


def test_100_continue_is_immediate_on_an_idle_connection() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(EXPECTING)
        assert transport.output == b"HTTP/1.1 100 Continue\r\n\r\n"

    in_loop(check)


def test_a_body_sent_without_waiting_for_100_gets_no_100() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + EXPECTING + b"{}")
        handler.answer_next()
        handler.answer_next()
        assert b"100 Continue" not in transport.output

    in_loop(check)


@pytest.mark.parametrize(("bad", "status"), [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"POST /x HTTP/1.1\r\nContent-Length: 1500\r\n\r\n" + b"x" * 1500, 413),  # the refused body, whole
    (b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
])
def test_a_refusal_behind_a_pipelined_request_waits_its_turn_and_closes(bad: bytes, status: int) -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + bad)
        assert transport.output == b"" and not transport.reading  # nothing more is read
        handler.answer_next()
        assert handler.pending == []  # the refused request never reaches the handler
        assert transport.output.startswith(b"HTTP/1.1 200 ")
        assert f"HTTP/1.1 {status} ".encode() in transport.output
        assert transport.output.index(b"HTTP/1.1 200 ") < transport.output.index(f"HTTP/1.1 {status} ".encode())
        assert transport.closed

    in_loop(check)


def test_answers_wait_while_the_client_does_not_read() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.pause_writing()
        connection.data_received(GET * 3)
        assert handler.pending == [] and not transport.reading
        connection.resume_writing()
        assert len(handler.pending) == 1 and transport.reading

    in_loop(check)


def test_a_refusal_behind_an_answer_goes_out_once_the_client_reads_again() -> None:
    """The 413 owed behind a GET is sent when the client reads the GET's answer, even if it had
    stopped reading before that answer went out (it was lost, and the connection left open)."""
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        connection.pause_writing()
        handler.answer_next(b'{"live":true}')
        assert transport.output.count(b"HTTP/1.1 ") == 1
        connection.resume_writing()
        assert transport.output.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 413 " in transport.output
        assert transport.is_closing()

    in_loop(check)


def test_a_100_continue_owed_goes_out_once_the_client_reads_again() -> None:
    """The interim answer of the request arriving waits for the answer before it; if the client
    stopped reading meanwhile, it goes out when it reads again (it was never sent, and the client
    waited for its 408)."""
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + EXPECTING)
        connection.pause_writing()
        handler.answer_next(b'{"live":true}')
        assert not transport.output.endswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.resume_writing()
        assert transport.output.endswith(b'{"live":true}HTTP/1.1 100 Continue\r\n\r\n')

    in_loop(check)


def test_many_queued_requests_answered_at_once_do_not_recurse() -> None:
    """Requests queue while the client does not read; once it does, a handler that answers inside
    handle() used to recurse once per queued request (RecursionError past about 1,000)."""
    def check() -> None:
        connection, transport = connect(state(), ImmediateHandler())
        connection.pause_writing()
        connection.data_received(GET * 5000)
        assert transport.answers == 0 and len(connection.queue) == 5000
        connection.resume_writing()
        assert transport.answers == 5000 and not connection.queue

    in_loop(check)


# -- the rest of the connection's rules, byte by byte ---------------------------------------------------

def test_a_response_is_rendered_exactly() -> None:
    assert render_response(200, b'{"a":1}', "application/json", {"x-id": "7"}, keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\nx-id: 7\r\n\r\n"
        b'{"a":1}')
    assert render_response(503, b"", "text/plain", None, keep_alive=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n")
    assert render_response(599, b"", "text/plain", None, keep_alive=True).startswith(b"HTTP/1.1 599 Unknown\r\n")
    assert render_response(200, b'{"a":1}', "application/json", None, keep_alive=True, for_head=True) == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n")


def test_an_answer_to_head_has_the_bodys_length_and_no_body_and_the_connection_goes_on() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        handler.answer_next(b'{"live":true}')
        assert transport.output == b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n"
        handler.answer_next(b'{"live":true}')
        assert transport.output.endswith(b"content-length: 13\r\n\r\n" + b'{"live":true}') and transport.answers == 2
        assert not transport.closed

    in_loop(check)


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
        connection.data_received(GET)  # what follows the upgrade is another protocol: never read
        assert handler.pending == []

    in_loop(check)


@pytest.mark.parametrize("switching", [
    b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"POST /x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 4\r\n\r\nbody",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n\x16\x03\x01",
])
def test_a_request_to_switch_protocols_on_an_idle_connection_is_answered_before_it_closes(switching: bytes) -> None:
    def check() -> None:
        handler = HeldHandler()
        server_state = state()
        connection, transport = connect(server_state, handler)
        connection.data_received(switching)
        connection.data_received(GET)  # after the switch the stream is not HTTP/1.1: never read
        assert len(handler.pending) == 1 and not transport.closed
        assert server_state.requests_taken == 1  # nor taken in (httptools itself would parse on)
        handler.answer_next()
        assert transport.output.startswith(b"HTTP/1.1 200 ") and b"connection: close" in transport.output
        assert transport.closed

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
        refusal = json.loads(refused_transport.output.split(b"\r\n\r\n", 1)[1])
        assert refusal == {"error": "the server holds its limit of 1 connections per worker; retry shortly"}

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


def test_requests_arriving_while_the_client_does_not_read_leave_its_write_deadline_running() -> None:
    """Requests parsed while answers wait (one read can carry thousands) begin no request deadline of
    their own: that would replace the write deadline, and the client would never be dropped."""
    async def body() -> None:
        connection, transport = connect(state(request_timeout_s=0.05), ImmediateHandler())
        connection.pause_writing()
        connection.data_received(GET * 3)
        await asyncio.sleep(0.2)
        assert transport.aborted and transport.output == b""

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


def test_the_connection_sets_its_write_buffer_limit() -> None:
    _, transport = in_loop(lambda: connect(state(), HeldHandler()))
    assert transport.write_buffer_high_water == WRITE_BUFFER_HIGH_WATER


def test_an_answer_carries_the_handlers_headers() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET)
        handler.answer_next(headers={"x-request-id": "7"})
        assert b"\r\ncontent-type: application/json\r\n" in transport.output  # the default
        assert b"\r\nx-request-id: 7\r\n" in transport.output

    in_loop(check)


def test_at_the_connection_limit_the_longest_idle_connection_makes_room() -> None:
    async def body() -> None:
        server_state = state(max_connections=2)
        older, older_transport = connect(server_state, ImmediateHandler())
        await asyncio.sleep(0.01)
        _, newer_transport = connect(server_state, ImmediateHandler())
        await asyncio.sleep(0.01)
        older.data_received(GET)  # answered at once: the older connection was active last
        connect(server_state, ImmediateHandler())
        assert newer_transport.closed and not older_transport.closed

    asyncio.run(body())


@pytest.mark.parametrize(("pipelined", "reading"), [(33, True), (34, False)])
def test_reading_pauses_only_past_32_queued_requests(pipelined: int, reading: bool) -> None:
    def check() -> None:
        connection, transport = connect(state(), HeldHandler())
        connection.data_received(GET * pipelined)  # one goes to the handler, the rest queue
        assert transport.reading is reading

    in_loop(check)


def test_reading_resumes_when_the_client_reads_again_with_32_queued() -> None:
    def check() -> None:
        connection, transport = connect(state(), HeldHandler())
        connection.pause_writing()
        connection.data_received(GET * 32)
        connection.resume_writing()
        assert transport.reading

    in_loop(check)


def test_after_a_refusal_reading_never_resumes() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + b"NOT HTTP\r\n\r\n")
        connection.pause_writing()
        connection.resume_writing()
        assert not transport.reading and len(handler.pending) == 1

    in_loop(check)


@pytest.mark.parametrize("pipelined", [
    GET + b"POST /y HTTP/1.1\r\nHost: x\r\n",
    # The POST asked but sent its body at once; the request arriving after it did not ask.
    GET + EXPECTING + b"{}" + b"POST /y HTTP/1.1\r\nHost: x\r\n",
])
def test_a_100_continue_goes_only_to_a_request_that_asked_for_it(pipelined: bytes) -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(pipelined)
        while handler.pending:
            handler.answer_next()
        assert transport.answers == pipelined.count(b" HTTP/1.1\r\n") - 1 and b"100 Continue" not in transport.output

    in_loop(check)


def test_a_closed_connection_reads_nothing_more() -> None:
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        handler.answer_next()
        connection.data_received(GET)
        assert transport.closed and handler.pending == [] and transport.answers == 1

    in_loop(check)


# -- which deadline runs when: the request deadline (408) for a client sending a request, the
# keep-alive timeout (a quiet close) for an idle connection -------------------------------------

QUICK_REQUEST = {"request_timeout_s": 0.05, "keepalive_timeout_s": 30}
QUICK_KEEPALIVE = {"request_timeout_s": 30, "keepalive_timeout_s": 0.05}
PARTIAL_HEAD = b"POST /y HTTP/1.1\r\nHost: x\r\n"


def test_a_request_begun_on_a_kept_alive_connection_is_held_to_the_request_deadline() -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(request_timeout_s=0.1, keepalive_timeout_s=0.05), handler)
        connection.data_received(GET)
        handler.answer_next()
        connection.data_received(PARTIAL_HEAD)  # and nothing more
        await asyncio.sleep(0.3)
        assert transport.answers == 2 and b"HTTP/1.1 408 " in transport.output

    asyncio.run(body())


def test_a_request_arriving_while_the_previous_is_answered_is_held_to_the_request_deadline() -> None:
    async def body() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(**QUICK_REQUEST), handler)
        connection.data_received(GET + PARTIAL_HEAD)
        await asyncio.sleep(0.1)  # the server is working on the GET: nobody's deadline runs
        handler.answer_next()
        await asyncio.sleep(0.2)
        assert b"HTTP/1.1 408 " in transport.output and transport.closed

    asyncio.run(body())


@pytest.mark.parametrize(("timeouts", "sent", "answer"), [
    (QUICK_KEEPALIVE, b"", None),  # idle when the client reads again: the keep-alive timeout
    (QUICK_REQUEST, PARTIAL_HEAD, b"HTTP/1.1 408 "),  # a request half sent: the request deadline
])
def test_when_the_client_reads_again_the_right_deadline_runs(timeouts: dict[str, float], sent: bytes,
                                                                answer: bytes | None) -> None:
    async def body() -> None:
        connection, transport = connect(state(**timeouts), HeldHandler())
        connection.pause_writing()
        connection.data_received(sent)
        connection.resume_writing()
        await asyncio.sleep(0.2)
        assert transport.closed and not transport.aborted
        assert (transport.output.startswith(answer) if answer else transport.output == b"")

    asyncio.run(body())


# -- what the worker counts, and what a closed or refused connection still does with bytes ------------------

def test_requests_taken_in_and_answered_are_counted_one_each() -> None:
    """The worker logs both at its stop, and their difference as the requests it never answered."""
    def check() -> None:
        handler = HeldHandler()
        server_state = state()
        connection, transport = connect(server_state, handler)
        connection.data_received(GET * 3)
        assert (server_state.requests_taken, server_state.requests_answered) == (3, 0)
        handler.answer_next()
        handler.answer_next()
        assert (server_state.requests_taken, server_state.requests_answered) == (3, 2)
        transport.closed = True  # the client left: the last answer is dropped, and not counted
        handler.answer_next()
        assert (server_state.requests_taken, server_state.requests_answered) == (3, 2)
        assert transport.answers == 2

    in_loop(check)


def test_a_refused_request_is_neither_taken_in_nor_counted_answered() -> None:
    def check() -> None:
        handler = HeldHandler()
        server_state = state()
        connection, transport = connect(server_state, handler)
        connection.data_received(GET + b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
        handler.answer_next()
        assert b"HTTP/1.1 413 " in transport.output and transport.closed
        assert (server_state.requests_taken, server_state.requests_answered) == (1, 1)

    in_loop(check)


def test_a_second_limit_behind_a_refusal_does_not_replace_its_answer() -> None:
    """The parser goes on after a refusal from the headers (417 here) through what the same read holds:
    a request target over its limit behind it changes nothing; the client gets the first refusal."""
    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET + b"GET / HTTP/1.1\r\nExpect: nonsense\r\n\r\n"
                                 + b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        handler.answer_next()
        assert transport.answers == 2 and transport.closed
        assert transport.output.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 417 " in transport.output
        assert b"HTTP/1.1 414 " not in transport.output

    in_loop(check)


def test_a_connection_closed_at_its_keep_alive_timeout_reads_nothing_more() -> None:
    """Bytes already on their way when the timeout closed it: no request is parsed, so no 100 Continue
    is written to a closed connection and nothing is taken in."""
    async def body() -> None:
        handler = HeldHandler()
        server_state = state(**QUICK_KEEPALIVE)
        connection, transport = connect(server_state, handler)
        connection.data_received(GET)
        handler.answer_next()
        await asyncio.sleep(0.2)
        assert transport.closed
        connection.data_received(EXPECTING)
        assert transport.answers == 1 and b"100 Continue" not in transport.output
        assert handler.pending == [] and server_state.requests_taken == 1

    asyncio.run(body())
