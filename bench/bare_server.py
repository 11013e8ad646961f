"""The floor a Python HTTP server on this machine can reach: asyncio + uvloop + httptools, pre-forked
workers on one listening socket (as the model server runs), and one fixed, valid Open Inference
Protocol answer to every request. No JSON parsing, no routing, no model, no metrics, no log.

    python bench/bare_server.py PORT [WORKERS]

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
import uvloop

BODY = (b'{"model_name":"iris","model_version":"1","outputs":[{"name":"predict","datatype":"INT64",'
        b'"shape":[1],"data":[0]}]}')
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY)) + BODY


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


def serve(listener: socket.socket) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(BareConnection, sock=listener, backlog=1024))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


def main() -> int:
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else len(os.sched_getaffinity(0))
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
                serve(listener)
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
