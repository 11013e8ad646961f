"""The HTTP `Connection` driven in process, the way uvicorn tests its protocols: bytes in, a fake
transport recording what is written, and a handler that answers only when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from model_server.app import error_body
from model_server.http import Connection, Request, ServerState

GET = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False
        self.aborted = False
        self.write_buffer_high_water: int | None = None

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
        self.write_buffer_high_water = high

    @property
    def output(self) -> bytes:
        return b"".join(self.written)

    @property
    def answers(self) -> int:
        return self.output.count(b"HTTP/1.1 ")


class HeldHandler:
    """Answers only when the test says so (a request the model is still working on)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Request, Connection]] = []

    def handle(self, request: Request, connection: Connection) -> None:
        self.pending.append((request, connection))

    def answer_next(self, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
        request, connection = self.pending.pop(0)
        connection.respond(request, 200, body, headers=headers)


class ImmediateHandler(HeldHandler):
    """Answers inside `handle`, as the health routes do."""

    def handle(self, request: Request, connection: Connection) -> None:
        connection.respond(request, 200, b"{}")


def state(**limits: Any) -> ServerState:
    return ServerState(**{"max_body_bytes": 1024, "request_timeout_s": 30, "keepalive_timeout_s": 30, **limits})


def connect(server_state: ServerState, handler: HeldHandler) -> tuple[Connection, FakeTransport]:
    """A connection as a worker makes it (needs a running event loop)."""
    connection = Connection(server_state, handler, error_body)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def in_loop(test: Callable[[], Any]) -> Any:
    async def body() -> Any:
        return test()

    return asyncio.run(body())
