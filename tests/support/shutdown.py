"""Load during a SIGTERM: the check shared by the process test and the container test."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]})


@dataclass
class ShutdownReport:
    outcomes: Counter[str]
    ready_503_after_s: float | None
    exit_code: int | None
    exited_after_s: float


def _client(host: str, port: int, stop: threading.Event, outcomes: Counter[str], lock: threading.Lock) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    served = 0  # answers received on the current connection
    while not stop.is_set():
        try:
            if connection.sock is None:
                connection.connect()
                served = 0
        except OSError:
            with lock:
                outcomes["refused"] += 1
            return
        try:
            connection.request("POST", "/v2/models/iris/infer", BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            outcome = "ok" if response.status == 200 else f"status {response.status}"
            served += 1
            if response.will_close:
                connection.close()
        except (http.client.HTTPException, OSError) as error:
            # On a connection the server has answered before, the request was accepted and then
            # dropped: lost. A brand-new connection reset without an answer was completed by the
            # kernel as the socket closed but never accepted by the server: refused, like a
            # closed port (https://man7.org/linux/man-pages/man2/listen.2.html, the backlog).
            outcome = f"lost: {type(error).__name__}" if served else "refused"
            connection.close()
        with lock:
            outcomes[outcome] += 1


def terminate_under_load(host: str, port: int, send_sigterm: Callable[[], None],
                         wait_exit: Callable[[float], int | None], clients: int = 8,
                         grace_s: float = 15) -> ShutdownReport:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(host, port, stop, outcomes, lock), daemon=True)
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    signalled = time.monotonic()
    send_sigterm()
    ready_503_after: float | None = None
    while time.monotonic() - signalled < 2 and ready_503_after is None:
        probe = http.client.HTTPConnection(host, port, timeout=2)
        try:
            probe.request("GET", "/v2/health/ready")
            if probe.getresponse().status == 503:
                ready_503_after = time.monotonic() - signalled
        except OSError:
            pass
        finally:
            probe.close()
    exit_code = wait_exit(grace_s)
    exited_after = time.monotonic() - signalled
    stop.set()
    for thread in threads:
        thread.join(10)
    return ShutdownReport(outcomes, ready_503_after, exit_code, exited_after)
