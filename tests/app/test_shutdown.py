from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support.server import start_server
from tests.support.shutdown import terminate_under_load


def test_sigterm_under_load_loses_no_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, MODEL_WORKERS="2", MODEL_DRAIN_S="1.0", MODEL_SHUTDOWN_TIMEOUT_S="5")

    def wait_exit(timeout: float) -> int | None:
        try:
            return server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            return None

    report = terminate_under_load(
        "127.0.0.1", server.port, lambda: server.process.send_signal(signal.SIGTERM), wait_exit)
    lost = {outcome: n for outcome, n in report.outcomes.items() if outcome not in ("ok", "refused")}
    assert lost == {}, report
    assert report.outcomes["ok"] > 100
    assert report.ready_503_after_s is not None and report.ready_503_after_s < 0.5, report
    assert report.exit_code == 0, server.log()
    assert report.exited_after_s < 1.0 + 5 + 2
