"""SIGTERM drains a worker: never a lost request, never a signal lost."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.server import APP_DIR, server_env, start_server, write_model
from tests.support.shutdown import terminate_under_load


def test_sigterm_under_load_loses_no_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, MODEL_WORKERS="2", MODEL_DRAIN_S="1.0", MODEL_SHUTDOWN_TIMEOUT_S="5")

    def wait_exit(timeout: float) -> int | None:
        try:
            return server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            return None

    report = terminate_under_load("127.0.0.1", server.port, lambda: server.process.send_signal(signal.SIGTERM),
                                  wait_exit, server.log, workers=2)
    lost = {outcome: n for outcome, n in report.outcomes.items() if outcome not in ("ok", "refused")}
    assert lost == {}, report
    assert report.answered_while_draining > 0, report  # it kept serving through the drain
    assert report.ready_503_after_s is not None, report  # not ready while it still answered
    # 0: every worker finished on its own; one the supervisor had to kill (at drain + shutdown
    # timeout + 5 s) makes it exit 1, and one that hangs past grace_s makes wait_exit give None.
    assert report.exit_code == 0, server.log()


# A worker as the supervisor forks it, with SIGTERM blocked; the supervisor forwards a SIGTERM
# before the worker unblocks it, as when a pod is deleted while its workers still warm up.
WORKER_WITH_PENDING_STOP = """
import os, signal
from model_server import metrics
from model_server.settings import ServerSettings
settings = ServerSettings()
metrics.prepare(settings.metrics_dir)
from model_server.__main__ import listen, run_worker
from model_server.model import load_model
model = load_model(settings)
listener = listen(settings)
signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM,))
os.kill(os.getpid(), signal.SIGTERM)
run_worker(settings, model, listener)
print("drained", flush=True)
"""


def test_a_stop_signal_pending_when_the_worker_starts_drains_it(tmp_path: Path) -> None:
    model_path, sha256 = write_model(tmp_path)
    env = server_env(model_path, sha256, MODEL_METRICS_DIR=str(tmp_path))  # port 0: nobody connects
    worker = subprocess.run([sys.executable, "-c", WORKER_WITH_PENDING_STOP], env=env, cwd=APP_DIR,
                            capture_output=True, text=True, timeout=30)
    assert (worker.returncode, worker.stdout.splitlines()[-1:]) == (0, ["drained"]), worker.stderr
