"""Framing and limits, byte by byte (tests/support/connection.py drives the connection in process):
the request line, the header section and the body are bounded exactly where the server says,
however the bytes are split into reads."""

from __future__ import annotations

import json

import pytest

from model_server.http import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_LINE_BYTES
from tests.support.connection import GET, FakeTransport, HeldHandler, connect, in_loop, state


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
        assert b"content-type: application/json\r\n" in transport.output
        body = transport.output.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"]
        connection.data_received(GET)  # nothing more is read
        assert transport.output.count(b"HTTP/1.1 ") == 1

    in_loop(check)


def feed(chunks: list[bytes], max_body_bytes: int = 1024) -> tuple[HeldHandler, FakeTransport]:
    def check() -> tuple[HeldHandler, FakeTransport]:
        handler = HeldHandler()
        connection, transport = connect(state(max_body_bytes=max_body_bytes), handler)
        for chunk in chunks:
            connection.data_received(chunk)
        return handler, transport

    result: tuple[HeldHandler, FakeTransport] = in_loop(check)
    return result


def answer_to(chunks: list[bytes], max_body_bytes: int = 1024) -> int:
    """Feed one request in `chunks`, let the handler answer whatever reaches it with a 200, and return
    the status of the one answer written: a 200 is the handler's (the request was taken whole), any
    other the connection's refusal. No answer at all (a silent close, a request lost) fails here."""
    def check() -> FakeTransport:
        handler = HeldHandler()
        connection, transport = connect(state(max_body_bytes=max_body_bytes), handler)
        for chunk in chunks:
            connection.data_received(chunk)
        while handler.pending:
            handler.answer_next()
        return transport

    transport: FakeTransport = in_loop(check)
    assert transport.answers == 1, transport.output
    status = int(transport.output[9:12])
    assert transport.closed is (status != 200), "a refusal closes the connection; an answered request keeps it"
    return status


HEAD_LIMIT_MESSAGE = b"headers are over the limit of %d bytes and %d fields" % (MAX_HEADER_BYTES, MAX_HEADER_FIELDS)


# -- a head still arriving is counted as it arrives (httptools holds an unfinished header value back) --

def unfinished_head(size: int) -> bytes:
    start = b"GET / HTTP/1.1\r\nX-Big: "
    return start + b"v" * (size - len(start))


@pytest.mark.parametrize(("head_bytes", "status"), [(MAX_HEADER_BYTES, 200), (MAX_HEADER_BYTES + 1, 431)])
def test_an_unfinished_head_is_refused_past_the_limit_however_it_is_split(head_bytes: int, status: int) -> None:
    head = unfinished_head(head_bytes)
    for pieces in ([head], [head[:1000], head[1000:9000], head[9000:]]):
        # At the limit the head is still being taken, and is answered once it is finished.
        assert answer_to([*pieces, b"\r\n\r\n"]) == status
        if status != 200:
            _, transport = feed(pieces)
            assert HEAD_LIMIT_MESSAGE in transport.output and transport.closed


def test_a_head_after_an_answered_request_counts_from_its_first_read() -> None:
    def check() -> FakeTransport:
        handler = HeldHandler()
        connection, transport = connect(state(), handler)
        connection.data_received(GET)
        handler.answer_next()
        head = unfinished_head(MAX_HEADER_BYTES + 1000)
        connection.data_received(head[:10_000])  # begins the next request: counts
        connection.data_received(head[10_000:])
        return transport

    transport = in_loop(check)
    assert transport.answers == 2 and b"HTTP/1.1 431 " in transport.output


def test_a_pipelined_head_counts_from_where_it_begins() -> None:
    # The read that ends the first request's head also carries its body and begins the second
    # request: its bytes are not the second request's head, and counting them would refuse a head
    # well within the limit.
    body = b"c" * (MAX_HEADER_BYTES + 1000)
    first = b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n" % len(body)
    second = b"\r\n" + body + b"GET /b HTTP/1.1\r\nX-B: " + b"b" * 100
    third = b"b" * 100 + b"\r\n\r\n"

    def check() -> None:
        handler = HeldHandler()
        connection, transport = connect(state(max_body_bytes=len(body)), handler)
        for chunk in (GET, first, second, third):  # after an earlier request, as on a kept-alive connection
            connection.data_received(chunk)
        for path in ("/v2/health/live", "/a", "/b"):
            assert [request.path for request, _ in handler.pending] == [path]
            handler.answer_next()
        assert transport.answers == 3 and b" 431 " not in transport.output

    in_loop(check)


# -- complete heads are counted exactly: name and value bytes, and fields -----------------------

@pytest.mark.parametrize(("value_bytes", "status"), [(MAX_HEADER_BYTES - 1, 200), (MAX_HEADER_BYTES, 431)])
def test_header_bytes_are_refused_past_the_limit(value_bytes: int, status: int) -> None:
    assert answer_to([b"GET / HTTP/1.1\r\nX: " + b"v" * value_bytes + b"\r\n\r\n"]) == status  # 1 + value bytes


def test_header_bytes_add_up_over_fields() -> None:
    field = b"X-Part: " + b"p" * 6000 + b"\r\n"
    assert answer_to([b"GET / HTTP/1.1\r\n" + field * 3 + b"\r\n"]) == 431


@pytest.mark.parametrize(("fields", "status"), [(MAX_HEADER_FIELDS, 200), (MAX_HEADER_FIELDS + 1, 431)])
def test_header_fields_are_refused_past_the_limit(fields: int, status: int) -> None:
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(fields)) + b"\r\n"
    assert answer_to([head]) == status


# -- the request line ----------------------------------------------------------------------------

@pytest.mark.parametrize(("target_bytes", "status"), [(MAX_REQUEST_LINE_BYTES, 200), (MAX_REQUEST_LINE_BYTES + 1, 414)])
def test_a_request_target_is_refused_past_the_limit(target_bytes: int, status: int) -> None:
    target = b"/" + b"t" * (target_bytes - 1)
    assert answer_to([b"GET " + target + b" HTTP/1.1\r\n\r\n"]) == status


def test_a_request_target_split_across_reads_arrives_whole() -> None:
    handler, _ = feed([b"GET /v2/mod", b"els/iris/ready HTTP/1.1\r\n\r\n"])
    ((request, _),) = handler.pending
    assert request.path == "/v2/models/iris/ready"


# -- the body ---------------------------------------------------------------------------------

CHUNKED = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(*sizes: int) -> bytes:
    return CHUNKED + b"".join(b"%x\r\n" % size + b"c" * size + b"\r\n" for size in sizes) + b"0\r\n\r\n"


@pytest.mark.parametrize(("request_bytes", "body_bytes"), [
    (b"POST /x HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + b"c" * 1024, 1024),
    (chunked(512, 512), 1024),
])
def test_a_body_of_exactly_the_limit_is_taken(request_bytes: bytes, body_bytes: int) -> None:
    handler, transport = feed([request_bytes])
    assert transport.output == b"" and len(handler.pending[0][0].body) == body_bytes


def test_a_chunked_body_is_refused_once_its_chunks_add_up_past_the_limit() -> None:
    assert answer_to([chunked(600, 600)]) == 413
    _, transport = feed([chunked(600, 600)])
    assert b"over the 1024-byte limit" in transport.output


def test_a_body_is_not_counted_as_head() -> None:
    body = b"c" * (3 * MAX_HEADER_BYTES)
    pieces = [b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)]
    pieces += [body[start:start + 4096] for start in range(0, len(body), 4096)]
    handler, transport = feed(pieces, max_body_bytes=len(body))
    assert transport.output == b"" and handler.pending[0][0].body == body
