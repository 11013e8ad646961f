"""python -m model_server: verify and load the model once, then serve it with one worker per CPU.

The supervisor (this process) loads the model before forking, so a bad artifact stops the
server before it listens, start-up pays for one load, and the workers share the model's
memory copy-on-write. SIGTERM is forwarded to every worker, which drains and exits.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":
    # Start-up imports the model's libraries and builds the model: hundreds of thousands of objects,
    # all kept, which the cyclic garbage collector would walk again and again as they pile up. Off
    # from the first import until the heap is frozen before the fork (worker.settle_heap), as
    # https://docs.python.org/3/library/gc.html#gc.freeze advises for a parent that forks workers.
    gc.disable()

import os
import shutil
import signal
import socket
import sys
import time
import traceback
from types import FrameType

from pydantic import ValidationError

from model_server import metrics
from model_server.errors import ModelLoadError
from model_server.logs import log_event
from model_server.model import Model, load_model
from model_server.settings import ServerSettings, settings_problems
from model_server.signals import STOP_SIGNALS

CRASH_WINDOW_S = 10.0  # a worker dying sooner than this after its start counts as a crash
MAX_CRASHES = 5


def listen(settings: ServerSettings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.host, settings.port))
    listener.listen(1024)
    listener.setblocking(False)
    return listener


def run_worker(settings: ServerSettings, model: Model, listener: socket.socket) -> None:
    # Imported here, not at the top: what only workers run is imported once the model has loaded
    # (a bad artifact is refused without it), by the supervisor just before it forks.
    from model_server.worker import serve

    serve(settings, model, listener)


class Supervisor:
    def __init__(self, settings: ServerSettings, model: Model, listener: socket.socket) -> None:
        self.settings = settings
        self.model = model
        self.listener = listener
        self.children: dict[int, float] = {}
        self.stopping = False
        self.crashes = 0

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGALRM, self._kill_stragglers)
        # What every worker runs is imported, and the heap settled, once here rather than in each worker
        # after the fork: workers start serving sooner, and share these pages, frozen before the fork as
        # https://docs.python.org/3/library/gc.html#gc.freeze advises.
        from model_server.worker import settle_heap

        settle_heap()
        for _ in range(self.settings.workers):
            self._spawn()
        failed = False
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = self.children.pop(pid, time.monotonic())
            metrics.Metrics.process_exited(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                failed |= code != 0
                continue
            log_event("worker_exited", pid=pid, code=code)
            self.crashes += time.monotonic() - started < CRASH_WINDOW_S
            if self.crashes >= MAX_CRASHES:
                log_event("giving_up", reason=f"{self.crashes} workers died within {CRASH_WINDOW_S:g} s of starting")
                self._stop(signal.SIGTERM, None)
                failed = True
                continue
            self._spawn()
        signal.alarm(0)
        return 1 if failed else 0

    def _spawn(self) -> None:
        # Block stop signals across fork: the child unblocks them once its event loop handles them.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            code = 0
            try:
                run_worker(self.settings, self.model, self.listener)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.children[pid] = time.monotonic()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        # Only workers accept; once the last one closes its copy, new connections are refused
        # instead of waiting in a backlog nobody will serve.
        self.listener.close()
        log_event("shutting_down", signal=signal.Signals(signum).name, workers=len(self.children))
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)
        # Workers drain, then finish in-flight work; past that, and a margin, they are killed.
        signal.alarm(int(self.settings.drain_s + self.settings.shutdown_timeout_s) + 5)

    def _kill_stragglers(self, signum: int, frame: FrameType | None) -> None:
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)


def main() -> int:
    try:
        settings = ServerSettings()
    except ValidationError as error:
        print(f"refusing to start: invalid settings: {settings_problems(error)}", file=sys.stderr)
        return 2
    metrics_dir = metrics.prepare(settings.metrics_dir)
    try:
        return serve(settings)
    finally:
        if settings.metrics_dir is None:  # ours alone: do not leave it behind in /dev/shm
            shutil.rmtree(metrics_dir, ignore_errors=True)


def serve(settings: ServerSettings) -> int:
    if settings.prediction_log_dir is not None and settings.prediction_log_sample_rate > 0 and not os.access(
            settings.prediction_log_dir, os.W_OK):
        print(f"refusing to start: MODEL_PREDICTION_LOG_DIR {settings.prediction_log_dir} is not a writable "
              "directory", file=sys.stderr)
        return 2
    try:
        model = load_model(settings)
    except ModelLoadError as error:
        print(f"refusing to start: {error}", file=sys.stderr)
        return 1
    if settings.sha256 is None:
        log_event("warning", message="serving an unpinned model (MODEL_ALLOW_UNPINNED): for local development only")
    try:
        listener = listen(settings)
    except OSError as error:
        print(f"refusing to start: cannot listen on {settings.host}:{settings.port}: {error.strerror}",
              file=sys.stderr)
        return 1
    # The port actually bound: MODEL_PORT=0 asks the kernel for a free one, and this line says which.
    bound_port = listener.getsockname()[1]
    runtime = model.runtime
    device = {"device": runtime.device, **({"device_reason": runtime.device_reason} if runtime.device_reason else {})}
    log_event("model_loaded", model=model.name, version=model.version, sha256=model.sha256, runtime=runtime.kind,
              **device, load_ms=round(model.load_seconds * 1000, 1), features=model.n_features,
              inputs=[spec.name for spec in model.inputs], outputs=list(model.outputs), workers=settings.workers,
              threads=model.threads, max_batch_size=model.max_batch_size,
              max_batch_wait_ms=model.max_batch_wait_s * 1000, listen=f"{settings.host}:{bound_port}")
    if settings.workers == 1:
        run_worker(settings, model, listener)
        return 0
    return Supervisor(settings, model, listener).run()


if __name__ == "__main__":
    sys.exit(main())
