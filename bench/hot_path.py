"""The server's own Python CPU per request, without sockets: one worker's code driven in process.

    python bench/hot_path.py [--requests 40000] [--batch 16] [--app DIR]

A load test on a shared machine measures the kernel's TCP work and whatever else runs beside the
server; this measures only what the server's Python code costs, so that one change to it can be
told from the next. It builds what a worker builds (metrics in multiprocess mode, access log on,
batcher, app) around connections whose transport is a stub, feeds `--batch` connections one V2
request each per event-loop pass (they share one predict call, as under load), and reports the
worker thread's CPU time per request with the predict calls' CPU time taken out.

--app runs another checkout's app/ directory instead (for A/B comparisons); it must have the
predict-time metric (model_server_predict_cpu_seconds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = (b'{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP64","data":[[5.1,3.5,1.4,0.2]]}],'
        b'"outputs":[{"name":"predict"}]}')
REQUEST = (b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY


def run(requests: int, batch: int) -> None:
    import asyncio
    import hashlib
    import tempfile
    import time

    import uvloop

    from model_server import metrics as metrics_module

    metrics_module.prepare(Path(tempfile.mkdtemp(prefix="hot-path-metrics-")))
    from model_server.app import ModelApp, error_body
    from model_server.batching import Batcher
    from model_server.http import Connection, ServerState
    from model_server.logs import AccessLog, PredictionLog
    from model_server.metrics import Metrics
    from model_server.model import load_model
    from model_server.settings import ServerSettings

    model_path = ROOT / "app" / "model.pkl"
    settings = ServerSettings(path=model_path, sha256=hashlib.sha256(model_path.read_bytes()).hexdigest(),
                              name="iris", workers=1)
    model = load_model(settings)

    class StubTransport:
        def __init__(self) -> None:
            self.written = 0

        def write(self, data: bytes) -> None:
            self.written += len(data)

        def is_closing(self) -> bool:
            return False

        def pause_reading(self) -> None: ...

        def resume_reading(self) -> None: ...

        def set_write_buffer_limits(self, high: int) -> None: ...

        def close(self) -> None: ...

    predict_cpu = [0.0]

    async def scenario() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        model.warm_up()
        metrics = Metrics(model.max_batch_size, model.name)
        devnull = os.open(os.devnull, os.O_WRONLY)
        access_log = AccessLog(True, fd=devnull)
        batcher = Batcher(model, model.max_batch_size, model.max_batch_wait_s, metrics.observe_batch, loop,
                          metrics.observe_predict)
        inner_observe = batcher.observe_predict
        assert inner_observe is not None

        def observe_predict(seconds: float, cpu_seconds: float) -> None:
            predict_cpu[0] += cpu_seconds
            inner_observe(seconds, cpu_seconds)

        batcher.observe_predict = observe_predict
        state = ServerState(max_body_bytes=settings.max_body_bytes, request_timeout_s=30, keepalive_timeout_s=75)
        state.ready = True
        app = ModelApp(model, batcher, state, metrics, access_log, PredictionLog(None, 0.0))
        connections = []
        for _ in range(batch):
            connection = Connection(state, app, error_body)
            connection.connection_made(StubTransport())  # type: ignore[arg-type]
            connections.append(connection)

        async def passes(count: int) -> None:
            for _ in range(count):
                for connection in connections:
                    connection.data_received(REQUEST)
                # The batch flushes, its answers go out, the access log is written: a few loop passes.
                for _ in range(3):
                    await asyncio.sleep(0)

        await passes(50)  # warm-up
        from model_server import worker

        if hasattr(worker, "settle_heap") and not os.environ.get("HOT_PATH_NO_SETTLE"):
            worker.settle_heap()  # as a worker does before it serves
        predict_cpu[0] = 0.0
        rounds = max(1, requests // batch)
        before = time.thread_time()
        await passes(rounds)
        spent = time.thread_time() - before
        assert state.requests_answered == state.requests_taken, "requests left unanswered"
        return spent, rounds * batch

    loop = uvloop.new_event_loop()
    spent, done = loop.run_until_complete(scenario())
    loop.close()
    own = (spent - predict_cpu[0]) / done * 1e6
    print(f"{done} requests in batches of {batch}: {spent / done * 1e6:.2f} µs CPU/request, "
          f"predict {predict_cpu[0] / done * 1e6:.2f}, the server's own {own:.2f} "
          f"({own / (predict_cpu[0] / done * 1e6):.2f}x predict, a ratio that a crowded machine moves less)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--app", type=Path, help="the app/ directory to run (default: this checkout's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        run(options.requests, options.batch)
        return 0
    # A fresh interpreter with the chosen app/ first on the path (and OMP at one thread, as the server).
    env = {**os.environ, "PYTHONPATH": str(options.app or ROOT / "app"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, __file__, "--child", "--requests", str(options.requests),
                           "--batch", str(options.batch)], env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
