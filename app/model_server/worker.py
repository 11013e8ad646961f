"""One worker process: an event loop serving the shared listening socket until SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket

import uvloop

from model_server.app import ModelApp, error_body
from model_server.batching import Batcher
from model_server.http import Connection, ServerState
from model_server.logs import AccessLog, PredictionLog, log_event
from model_server.metrics import Metrics
from model_server.model import Model
from model_server.settings import ServerSettings
from model_server.signals import STOP_SIGNALS

SHUTDOWN_POLL_S = 0.05
LOG_FLUSH_S = 1.0


def settle_heap() -> None:
    """Once the model is loaded (in the supervisor, before it forks) and warmed up (in a worker): what
    exists now (the libraries and the model, about 190,000 objects for scikit-learn) lives as long as
    the worker, so the cyclic garbage collector stops walking it (a full collection of it takes about
    50-100 ms, in the middle of answering requests, and dirties the pages the workers share). The
    collector, off while the server loads, is on from here for what is allocated later.

    Frozen without a collection first, as the gc docs advise for a parent that forks
    (https://docs.python.org/3/library/gc.html#gc.freeze): that collection costs start-up as much
    again, to free about 1,200 objects (for scikit-learn) into holes in the pages workers share."""
    gc.freeze()
    gc.enable()


def serve(settings: ServerSettings, model: Model, listener: socket.socket) -> None:
    """Serve until SIGTERM/SIGINT, then drain: not ready at once, keep answering (with
    Connection: close) for `drain_s`, stop accepting, finish what is in flight, exit."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    model.warm_up()
    settle_heap()
    metrics = Metrics(model.max_batch_size, model.name)
    metrics.load_seconds.set(model.load_seconds)
    metrics.model_info.labels(model.name, model.version, model.sha256, model.runtime.kind, model.runtime.device).set(1)
    access_log = AccessLog(settings.access_log)
    prediction_log = PredictionLog(settings.prediction_log_dir, settings.prediction_log_sample_rate)
    batcher = Batcher(model, model.max_batch_size, model.max_batch_wait_s, metrics.observe_batch, loop,
                      metrics.observe_predict)
    state = ServerState(max_body_bytes=settings.max_body_bytes, request_timeout_s=settings.request_timeout_s,
                        keepalive_timeout_s=settings.keepalive_timeout_s, max_connections=settings.max_connections)
    app = ModelApp(model, batcher, state, metrics, access_log, prediction_log)

    def make_connection() -> Connection:
        return Connection(state, app, error_body)

    server = loop.run_until_complete(loop.create_server(make_connection, sock=listener, backlog=1024,
                                                        start_serving=False))
    finished: asyncio.Future[None] = loop.create_future()

    def finish_in_flight(deadline: float, adopted: list[asyncio.Task[object]]) -> None:
        for connection in list(state.connections):
            if connection.idle:
                connection.close()
        if (state.connections or not all(task.done() for task in adopted)) and loop.time() < deadline:
            loop.call_later(SHUTDOWN_POLL_S, finish_in_flight, deadline, adopted)
        else:
            finished.set_result(None)

    def stop_accepting() -> None:
        # Serve whatever the kernel already queued for us: a connection left in the backlog
        # when the socket closes is reset, losing a request the client has sent.
        adopted: list[asyncio.Task[object]] = []
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                break
            adopted.append(loop.create_task(loop.connect_accepted_socket(make_connection, client)))
        server.close()
        finish_in_flight(loop.time() + settings.shutdown_timeout_s, adopted)

    def begin_shutdown() -> None:
        if not state.draining:
            state.ready = False
            state.draining = True
            loop.call_later(settings.drain_s, stop_accepting)

    def flush_prediction_log() -> None:
        prediction_log.flush()
        loop.call_later(LOG_FLUSH_S, flush_prediction_log)

    async def run() -> None:
        # Stop signals are handled before the first connection is accepted: once a readiness
        # probe has been answered, SIGTERM must drain, never kill. uvloop sees a signal only while
        # its loop runs (it sets the wakeup fd in run and restores it after,
        # https://github.com/MagicStack/uvloop/pull/270); one arriving between two run_* calls is
        # lost. So everything from installing the handlers to exiting happens in this one run.
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, begin_shutdown)
        # A supervisor forks workers with these blocked; any that arrived meanwhile are delivered now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        # Ready is true from the first accepted connection: the model is loaded and warmed up.
        state.ready = True
        await server.start_serving()
        flush_prediction_log()
        await finished

    try:
        loop.run_until_complete(run())
    finally:
        access_log.flush()
        prediction_log.close()
        loop.close()
        # Requests taken in but never answered are otherwise invisible: the shutdown deadline cut
        # them off, or their clients left. Operators (and the shutdown tests) read them here.
        log_event("worker_stopped", pid=os.getpid(), requests=state.requests_taken,
                  unanswered=state.requests_taken - state.requests_answered)
