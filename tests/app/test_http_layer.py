"""What real clients and proxies send beyond well-formed JSON, over a real socket: Expect headers,
oversized request lines and headers, too many connections, clients that do not read, and
malformed framing. The references are nginx, uvicorn and Go's net/http."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, start_server

INFER = b"/v2/models/iris/infer"
BODY = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}'
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
LIVE_ANSWER_ENDS = b'\r\n\r\n{"live":true}'
# An answer or a close takes milliseconds; a server that does neither fails the test this soon.
STALL_S = 5


def connect(server: Server, timeout: float = STALL_S) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_closed(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection: end of stream, or a reset. A server that
    stops sending and keeps the connection open fails the test at the socket's timeout."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the connection is still open and silent after {received!r}") from None
        if not chunk:
            return received
        received += chunk


def read_live_answer(connection: socket.socket) -> bytes:
    """Read the answer to LIVE, whole; the connection stays open."""
    received = b""
    while not received.endswith(LIVE_ANSWER_ENDS):
        chunk = connection.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def statuses(stream: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", stream)]


# -- Expect: 100-continue --------------------------------------------------------------------------------

def test_expect_100_continue_gets_continue_then_the_answer(server: Server) -> None:
    with connect(server) as connection:
        connection.sendall(b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        # Before any byte of the body: had the server waited for it, this would be the 408 at the
        # shared server's 1 s request deadline instead (a client waits about that long, then sends anyway).
        assert connection.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(BODY)
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"predict"' in answer


def test_expect_100_continue_with_a_body_over_the_limit_gets_413_at_once(server: Server) -> None:
    with connect(server) as connection:
        connection.sendall(b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                           b"Content-Length: 10000000\r\n\r\n")
        answer = read_until_closed(connection)
    assert statuses(answer) == [413]  # no 100 first: the client never sends the body


def test_an_expectation_the_server_cannot_meet_is_417(server: Server) -> None:
    with connect(server) as connection:
        connection.sendall(b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
        assert statuses(read_until_closed(connection)) == [417]


def test_http_1_0_expect_is_ignored(server: Server) -> None:
    with connect(server) as connection:
        connection.sendall(b"POST " + INFER + b" HTTP/1.0\r\nExpect: 100-continue\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
        assert statuses(read_until_closed(connection)) == [200]


# -- header limits ---------------------------------------------------------------------------------------

def test_a_request_line_over_8_kib_is_414(server: Server) -> None:
    with connect(server) as connection:
        connection.sendall(b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(connection)
    assert statuses(answer) == [414] and b"8192-byte limit" in answer


def test_a_header_section_over_16_kib_is_431_before_it_ends(server: Server) -> None:
    with connect(server) as connection:
        # Never finish the headers: the answer must come from the limit, not from the end of the section.
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000)
        answer = read_until_closed(connection)
    assert statuses(answer) == [431]


def test_too_many_header_fields_is_431(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: 1\r\n" % number for number in range(150))
    with connect(server) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert statuses(read_until_closed(connection)) == [431]


def test_headers_within_the_limits_are_served(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: %s\r\n" % (number, b"v" * 100) for number in range(90))
    with connect(server) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n")
        assert statuses(read_until_closed(connection)) == [200]


# -- malformed framing: a clean 400 and a closed connection, never a desynchronised stream ---------------

@pytest.mark.parametrize("request_bytes", [
    # Both framings: a proxy and this server could disagree on where the body ends (request smuggling).
    b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
    b"GET /v2/health/live HTTP/9.9\r\nHost: x\r\n\r\n",
    b"G\x00T /v2/health/live HTTP/1.1\r\n\r\n",
], ids=["cl-and-te", "bad-chunk-size", "conflicting-cl", "non-numeric-cl", "bad-version", "nul-in-method"])
def test_malformed_framing_is_400_and_the_connection_closes(server: Server, request_bytes: bytes) -> None:
    with connect(server) as connection:
        connection.sendall(request_bytes)
        answer = read_until_closed(connection)
    assert statuses(answer) == [400], answer  # one answer, nothing smuggled after it


def test_a_refused_request_is_answered_after_the_good_ones_before_it(server: Server) -> None:
    good = b"POST " + INFER + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    with connect(server) as connection:
        connection.sendall(good * 3 + b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert statuses(read_until_closed(connection)) == [200, 200, 200, 414]


# -- connection limits -------------------------------------------------------------------------------

@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    """One worker holding at most 4 connections, with a 2 s request deadline."""
    running = start_server(tmp_path, MODEL_WORKERS="1", MODEL_MAX_CONNECTIONS="4", MODEL_REQUEST_TIMEOUT_S="2",
                           MODEL_DRAIN_S="0")
    try:
        yield running
    finally:
        running.stop()


def test_idle_connections_at_the_limit_make_room_for_a_new_client(small_server: Server) -> None:
    idle = [connect(small_server) for _ in range(4)]
    try:
        # An answer on each proves the worker holds it, and makes it idle from then on, oldest first.
        for connection in idle:
            connection.sendall(LIVE)
            read_live_answer(connection)
        assert small_server.request("GET", "/v2/health/live").status == 200
        # The longest-idle connection was closed to make room.
        assert idle[0].recv(1) == b""
    finally:
        for connection in idle:
            connection.close()


def test_when_every_connection_is_busy_a_new_client_gets_503_not_a_hang(small_server: Server) -> None:
    trickling = [connect(small_server) for _ in range(4)]
    try:
        for connection in trickling:
            # A request, and in the same packet the head of one that never finishes: once the first is
            # answered, the worker has read both and holds the connection as receiving the second.
            connection.sendall(LIVE + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            read_live_answer(connection)
        with connect(small_server) as newcomer:
            newcomer.sendall(LIVE)
            answer = read_until_closed(newcomer)
        assert statuses(answer) == [503] and b"limit of 4 connections" in answer
        # The trickling clients are cut off at the 2 s request deadline, and the worker serves again.
        for connection in trickling:
            assert statuses(read_until_closed(connection)) == [408]
        assert small_server.request("GET", "/v2/health/live").status == 200
    finally:
        for connection in trickling:
            connection.close()


# -- backpressure on writes ------------------------------------------------------------------------

def metrics_requests(server: Server) -> float:
    text = server.request("GET", "/metrics").body.decode()
    match = re.search(r'model_server_requests_total\{endpoint="metrics",status="200"\} (\S+)', text)
    return float(match[1]) if match else 0.0


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, MODEL_WORKERS="1", MODEL_REQUEST_TIMEOUT_S="20", MODEL_DRAIN_S="0")
    try:
        yield running
    finally:
        running.stop()


def settled(count: Callable[[], float], deadline_s: float = 10, steady_polls: int = 5) -> float:
    """Poll `count` until it stops changing (the same over `steady_polls` polls in a row)."""
    deadline = time.monotonic() + deadline_s
    readings = [count()]
    while len(readings) < steady_polls or len(set(readings[-steady_polls:])) > 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        readings.append(count())
    return readings[-1]


def test_a_client_that_does_not_read_stops_getting_answers(patient_server: Server) -> None:
    """Pipelined requests for ~4 KB answers each, never read: the worker must stop producing them
    once the client's unread answers fill the buffers, not pile them up in memory."""
    requests = 3_000
    before = metrics_requests(patient_server)
    polls = 0

    def answered_to_greedy() -> float:
        nonlocal polls
        polls += 1  # each poll answered before this one counts too
        return metrics_requests(patient_server) - before - polls

    with socket.socket() as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        greedy.connect(("127.0.0.1", patient_server.port))
        greedy.settimeout(15)
        sender = threading.Thread(target=greedy.sendall, args=(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * requests,))
        sender.start()
        # Until the worker stops answering: well within the 20 s it gives a client to read.
        answered = settled(answered_to_greedy)
        # Answers fit in the kernel's buffers plus the 256 KiB write buffer: far fewer than asked for
        # (without backpressure the worker answers all of them into its memory).
        assert answered < requests / 2, answered
        # Reading them now lets the worker go on: every answer arrives, complete and in order.
        chunks: list[bytes] = [b""]
        answers = 0
        while answers < requests:
            chunk = greedy.recv(1 << 20)
            assert chunk, "the connection closed early"
            answers += (chunks[-1][-12:] + chunk).count(b"HTTP/1.1 200 ")  # a status line may span two reads
            chunks.append(chunk)
        sender.join()
    assert statuses(b"".join(chunks)) == [200] * requests


def worker_holds(client: tuple[str, int], server: tuple[str, int]) -> bool:
    """Whether the worker still holds its end of the connection from `client` to `server`: its
    socket there is ESTABLISHED (state 01 in /proc/net/tcp). Once the worker lets go, that end is
    closing (its last answers and a FIN wait in the kernel for the client to read them) or gone
    (reset): the client's end cannot tell until it reads, and reading would let the worker go on.
    The addresses are taken while connected: after a reset the client's socket no longer knows
    its peer."""
    (client_ip, client_port), (server_ip, server_port) = client, server

    def address(ip: str, port: int) -> str:  # /proc/net/tcp's hex: 127.0.0.1:8080 is 0100007F:1F90
        return f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"

    wanted = (address(server_ip, server_port), address(client_ip, client_port))
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return fields[3] == "01"
    return False


def test_a_client_that_never_reads_is_dropped_at_the_deadline(small_server: Server) -> None:
    with socket.socket() as stubborn:
        stubborn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        stubborn.connect(("127.0.0.1", small_server.port))
        stubborn.settimeout(10)
        ends = stubborn.getsockname(), stubborn.getpeername()
        with contextlib.suppress(OSError):  # already dropped
            stubborn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 3000)
        # Wait, without reading, for the worker to let go of the connection: 2 s after it stopped
        # answering. A worker that keeps it (and its buffer) for a client that never reads fails here.
        deadline = time.monotonic() + 30
        while worker_holds(*ends):
            assert time.monotonic() < deadline, "the worker still holds a client that never reads"
            time.sleep(0.05)
        stubborn.settimeout(STALL_S)
        read_until_closed(stubborn)  # what arrived, then the end of the stream or a reset
    assert small_server.request("GET", "/v2/health/live").status == 200
