"""Load during a SIGTERM: the check shared by the process test and the container test.

Every client request carries its own V2 `id`, which a 200 must echo. Once the server has exited,
what the clients saw is set against the server's own records on stdout: an access-log line for
each request it answered, and a `worker_stopped` line from each worker counting the requests it
took in and never answered. A request is lost when the server took it in and never answered, when
it answered and the client never got the answer, or when a kept-alive connection broke under it.
A request is refused only if the server never took it in: a connection still in the kernel's
backlog when the listening socket closes is reset, like a closed port
(https://man7.org/linux/man-pages/man2/listen.2.html).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

ROW = [5.1, 3.5, 1.4, 0.2]
WARM_UP_S = 30  # for every client to get its first answer, on a busy machine
UNANSWERED_ON_A_NEW_CONNECTION = "unanswered on a new connection"


@dataclass
class ShutdownReport:
    outcomes: Counter[str]
    ready_503_after_s: float | None  # None: readiness never said 503 while the server still answered
    answered_while_draining: int  # 200s received after the SIGTERM
    exit_code: int | None
    exited_after_s: float


def body(request_id: str) -> str:
    return json.dumps({"id": request_id, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                                     "data": ROW}]})


@dataclass
class _Load:
    host: str
    port: int
    stop: threading.Event
    signalled: threading.Event
    warmed: threading.Semaphore  # released once per client, at its first answer
    outcomes: Counter[str]
    lock: threading.Lock
    answered_while_draining: int = 0

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if outcome == "ok" and self.signalled.is_set():
                self.answered_while_draining += 1

    def client(self, number: int) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        served = 0  # answers received on the current connection
        sent = 0
        warmed = False
        while not self.stop.is_set():
            try:
                if connection.sock is None:
                    connection.connect()
                    served = 0
            except OSError:
                self.count("refused")  # no listener: the kernel refused the connection itself
                return
            request_id = f"client-{number}-{sent}"
            sent += 1
            try:
                connection.request("POST", "/v2/models/iris/infer", body(request_id),
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except (http.client.HTTPException, OSError) as error:
                # A kept-alive connection the server had answered on broke under this request: lost.
                # On a new connection, whether the server took the request in is for its records to say.
                self.count(f"lost: {type(error).__name__} on a kept-alive connection" if served
                           else UNANSWERED_ON_A_NEW_CONNECTION)
                connection.close()
                continue
            if response.status != 200:
                outcome = f"status {response.status}"
            elif json.loads(answer).get("id") != request_id:
                outcome = "lost: answered with another request's id"
            else:
                outcome = "ok"
                if not warmed:
                    warmed = True
                    self.warmed.release()
            served += 1
            self.count(outcome)
            if response.will_close:
                connection.close()


def _server_records(log: str) -> tuple[int, list[dict[str, int]]]:
    """The inference requests the server answered (its access log) and its workers' stop records."""
    answered, stopped = 0, []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("endpoint") == "infer":
            answered += 1
        elif entry.get("event") == "worker_stopped":
            stopped.append(entry)
    return answered, stopped


def _reconcile(outcomes: Counter[str], log: str, workers: int) -> None:
    """Turn what the clients could not tell (no answer on a new connection) into refused or lost,
    from the server's records."""
    answered_by_server, stopped = _server_records(log)
    if len(stopped) != workers:
        outcomes[f"lost: {workers - len(stopped)} of {workers} workers stopped without a record"] += 1
    unanswered = sum(record["unanswered"] for record in stopped)
    if unanswered:
        outcomes["lost: taken in, never answered"] += unanswered
    received = outcomes["ok"] + outcomes["lost: answered with another request's id"] + sum(
        n for outcome, n in outcomes.items() if outcome.startswith("status "))
    # The access log has a line for each request the server finished, its connection gone or not:
    # those it could not send are among the unanswered already.
    undelivered = max(0, answered_by_server - received - unanswered)
    if undelivered:
        outcomes["lost: answered, never received"] += undelivered
    if answered_by_server < received:
        outcomes[f"unaccounted: {received - answered_by_server} answers missing from the access log"] += 1
    # What the server neither answered nor took in never reached it: refused.
    without_answer = outcomes.pop(UNANSWERED_ON_A_NEW_CONNECTION, 0)
    refused = max(0, without_answer - unanswered - undelivered)
    if refused:
        outcomes["refused"] += refused


def terminate_under_load(host: str, port: int, send_sigterm: Callable[[], None],
                         wait_exit: Callable[[float], int | None], server_log: Callable[[], str],
                         workers: int, clients: int = 8, grace_s: float = 15) -> ShutdownReport:
    """Load the server from `clients` threads, SIGTERM it once every client has been answered, and
    probe readiness until it says 503 or the server stops accepting; after it exits (within
    `grace_s`), reconcile the clients' view with `server_log`, the server's stdout."""
    load = _Load(host, port, threading.Event(), threading.Event(), threading.Semaphore(0), Counter(),
                 threading.Lock())
    threads = [threading.Thread(target=load.client, args=(number,), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    warm_until = time.monotonic() + WARM_UP_S
    for _ in range(clients):
        if not load.warmed.acquire(timeout=max(0.0, warm_until - time.monotonic())):
            load.stop.set()
            raise AssertionError(f"not every client was answered within {WARM_UP_S} s: {load.outcomes}")
    signalled = time.monotonic()
    load.signalled.set()
    send_sigterm()
    ready_503_after: float | None = None
    # Until readiness says 503, or the server no longer answers (it has stopped accepting).
    while ready_503_after is None and time.monotonic() - signalled < grace_s:
        probe = http.client.HTTPConnection(host, port, timeout=5)
        try:
            probe.request("GET", "/v2/health/ready")
            if probe.getresponse().status == 503:
                ready_503_after = time.monotonic() - signalled
        except OSError:
            break
        finally:
            probe.close()
    exit_code = wait_exit(grace_s)
    exited_after = time.monotonic() - signalled
    load.stop.set()
    for thread in threads:
        thread.join(10)
    _reconcile(load.outcomes, server_log(), workers)
    return ShutdownReport(load.outcomes, ready_503_after, load.answered_while_draining, exit_code, exited_after)
