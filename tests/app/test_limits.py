"""Hostile or broken clients: big bodies, slow clients, garbage. Never a 5xx, never a wedged server."""

from __future__ import annotations

import json
import random
import socket
import time

from tests.support.server import Server


def raw_exchange(server: Server, payload: bytes, timeout: float = 5) -> bytes:
    """Send `payload` and read until the server closes; a server that neither answers nor closes
    within `timeout` fails the test (the socket's TimeoutError)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(payload)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def test_body_over_the_limit_is_refused_from_the_headers_before_it_is_sent(server: Server) -> None:
    # Announce 1 GB and send none of it: the answer must come from the headers alone (a server
    # waiting for the body would answer 408 at the 1 s request deadline instead).
    reply = raw_exchange(server, b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 1000000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"over the 65536-byte limit" in reply


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    chunk = b"x" * 40000
    payload = (b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert raw_exchange(server, payload).startswith(b"HTTP/1.1 413 ")


def test_slow_client_gets_408_and_is_disconnected(server: Server) -> None:
    started = time.monotonic()
    # Headers promise a body that never comes (the shared server allows 1 s per request). A server
    # that never cuts the client off fails at raw_exchange's 10 s timeout.
    reply = raw_exchange(server, b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
                         timeout=10)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"not received within 1 s" in reply
    assert time.monotonic() - started >= 0.9  # not before its deadline (timers may fire a tick early)


def test_slow_headers_are_cut_off_too(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never finishes the headers
        assert connection.recv(4096).startswith(b"HTTP/1.1 408 ")


def test_malformed_http_is_400(server: Server) -> None:
    assert raw_exchange(server, b"THIS IS NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_random_garbage_never_gets_a_5xx_and_the_server_stays_up(server: Server) -> None:
    generator = random.Random(7)
    documents: list[bytes] = []
    for _ in range(150):
        document = {
            "inputs": [{"name": generator.choice(["x", 1, None]),
                        "shape": generator.choice([[1, 4], [2, 4], [4], [-1, 4], "x", [1, 2, 3], []]),
                        "datatype": generator.choice(["FP64", "FP32", "INT8", "BOOL", "BYTES", "nope", 3]),
                        "data": generator.choice([[1, 2, 3, 4], [[1, 2, 3, 4]], [True] * 4, "abc", {}, [[]], None,
                                                  [1e308, -1e308, 0, 1], list(range(8))]),
                        "parameters": generator.choice([None, {}, {"binary_data_size": generator.randint(-5, 50)},
                                                        "x"])}],
            "outputs": generator.choice([None, [], [{"name": "predict"}], [{}], ["predict"], "x"]),
            "parameters": generator.choice([None, {"binary_data_output": True}, []]),
        }
        documents.append(json.dumps(document).encode())
        documents.append(bytes(generator.randrange(256) for _ in range(generator.randrange(1, 64))))
    for body in documents:
        headers = {"Inference-Header-Content-Length": str(generator.randint(0, 40))} if generator.random() < 0.2 else {}
        response = server.request("POST", "/v2/models/iris/infer", body, headers)
        assert response.status < 500, (body, response.body)
        assert "error" in response.json() or response.status == 200
    assert server.request("GET", "/v2/health/ready").status == 200


def test_client_disconnecting_mid_request_does_not_hurt_others(server: Server) -> None:
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            connection.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in")
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
    assert server.infer(body).status == 200
