"""The floors a Python HTTP server on this machine can reach: asyncio + uvloop + httptools, pre-forked
workers on one listening socket (as the model server runs).

    python bench/bare_server.py PORT [WORKERS] [--v2-json]

By default it sends one fixed, valid Open Inference Protocol answer to every request: no JSON
parsing, no routing, no model, no metrics, no log. With --v2-json it does only what every V2 JSON
server must do besides: it keeps the request's headers (to read its content type and length),
decodes the JSON body into a float64 array of the declared shape, and encodes an answer of one
label per row with orjson, a loop pass later (as a server that batches answers once the batch is
done). Still no routing, validation, limits, model, metrics or log.

It prints `ready` once every worker listens. bench/cpu_cost.py runs it beside the model server and
compares their CPU per request; nothing else uses it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httptools
import numpy as np
import orjson
import uvloop

BODY = (b'{"model_name":"iris","model_version":"1","outputs":[{"name":"predict","datatype":"INT64",'
        b'"shape":[1],"data":[0]}]}')
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
RESPONSE = HEAD + b"%d\r\n\r\n" % len(BODY) + BODY


class BareConnection(asyncio.Protocol):
    """Parses requests (so it pays for what any HTTP server must) and answers each with RESPONSE."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(RESPONSE)


class JsonConnection(BareConnection):
    """Keeps the headers and the body, decodes it, and answers each V2 request a loop pass later."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def on_message_begin(self) -> None:
        self.headers = {}
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.body:  # the readiness check
            super().on_message_complete()
            return
        tensor = orjson.loads(b"".join(self.body))["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        self.loop.call_soon(self.answer, len(rows))

    def answer(self, rows: int) -> None:
        body = orjson.dumps({"model_name": "iris", "model_version": "1", "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [rows], "data": [0] * rows}]})
        if self.transport is not None:
            self.transport.write(b"%s%d\r\n\r\n%s" % (HEAD, len(body), body))


def serve(listener: socket.socket, connection: type[BareConnection]) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(connection, sock=listener, backlog=1024))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def main() -> int:
    arguments = [argument for argument in sys.argv[1:] if argument != "--v2-json"]
    connection = JsonConnection if "--v2-json" in sys.argv else BareConnection
    port = int(arguments[0])
    workers = int(arguments[1]) if len(arguments) > 1 else len(os.sched_getaffinity(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                serve(listener, connection)
            finally:
                os._exit(0)
        children.append(pid)
    print("ready", flush=True)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for _ in children:
        os.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
