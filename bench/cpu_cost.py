"""CPU per request: the model server against a bare asyncio + httptools server, in the same run.

    python bench/cpu_cost.py [--seconds 10] [--clients 64] [--json FILE]

Wall-clock throughput on a shared machine swings with whatever else runs on it; the CPU a server
spends per request swings much less. For each server this counts the user+system CPU time of its
whole process tree (supervisor and workers, from /proc/<pid>/stat) over a wrk load window and
divides by the requests answered in it. For the model server it also reads, from its own /metrics
before and after the window, the CPU time its predict calls took (model_server_predict_cpu_seconds,
measured with time.thread_time() around each call, so a library's own threads would not be
counted as the server's) and their number, so the server's own cost is the rest:

    non-model CPU/request = (tree CPU - predict CPU) / requests

The bare server (bench/bare_server.py) is the floor: the same event loop, HTTP parser and
worker count, answering one fixed, valid OIP response without JSON, routing, model or metrics.
The same server with --v2-json is the floor for a server that speaks V2 JSON at all: it also keeps
the headers, decodes the body into an array and encodes an answer, a loop pass later, and nothing
else (no routing, validation, limits, batching, model, metrics or log).

The kernel's share (system time) is shown apart: it is the socket calls, and the wake-ups of a
client that waits for its answers. A slower server keeps its clients waiting longer, so its system
time per request is higher for the same calls (the bare server made to spin 40 µs per request spent
about 2.5x the system time per request it spends answering at once). The involuntary context
switches per request show why: wrk runs on the same two CPUs, and a client thread that an answer
wakes takes the CPU from the worker that wrote it. A server fast enough to keep its clients busy
wakes them rarely; a slower one is preempted up to once per answer, and pays for the switch and
for the caches the client leaves behind in kernel and user time alike.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "app" / "model.pkl"
BARE_SERVER = Path(__file__).resolve().parent / "bare_server.py"
BODY = json.dumps({"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]]}],
                   "outputs": [{"name": "predict"}]})
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PREDICT_CPU = "model_server_predict_cpu_seconds_total"
PREDICT_CALLS = "model_server_predict_seconds_count"


@dataclass
class CpuCost:
    name: str
    clients: int
    seconds: float  # the load window
    requests: int
    errors: int
    cpu_s: float  # user + system of the process tree over the window
    system_s: float  # of which in the kernel
    predict_cpu_s: float = 0.0
    predict_calls: int = 0
    preemptions: int = 0  # involuntary context switches of the tree's threads over the window

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6

    @property
    def system_us_per_request(self) -> float:
        return self.system_s / self.requests * 1e6

    @property
    def predict_us_per_request(self) -> float:
        return self.predict_cpu_s / self.requests * 1e6

    @property
    def preemptions_per_request(self) -> float:
        return self.preemptions / self.requests

    @property
    def own_us_per_request(self) -> float:
        """What the server spends per request besides its model's predict calls."""
        return self.cpu_us_per_request - self.predict_us_per_request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> dict[int, tuple[float, float]]:
    """User and system CPU time of each process of the tree under `root` (all their threads), in seconds."""
    seconds = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited since it was listed: the caller sees the tree change
        seconds[pid] = (int(fields[11]) * CLOCK_TICK_S, int(fields[12]) * CLOCK_TICK_S)  # utime, stime (14, 15)
    return seconds


def preemptions(pids: list[int]) -> int:
    """Involuntary context switches of every thread of `pids`: how often they were made to give up
    the CPU while they could still run (here, mostly to the client thread that an answer woke)."""
    switches = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                switches += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)$", status.read_text(),
                                          re.M).group(1))  # type: ignore[union-attr]
            except OSError:
                continue  # a thread that ended since it was listed
    return switches


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            if get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"server not ready within {timeout} s")


def predict_totals(port: int) -> tuple[float, int]:
    """The predict calls' CPU seconds and their number, summed over models and workers."""
    text = get(port, "/metrics")[1].decode()
    cpu = sum(float(v) for v in re.findall(rf"^{PREDICT_CPU}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    calls = sum(float(v) for v in re.findall(rf"^{PREDICT_CALLS}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return cpu, int(calls)


def run_wrk(url: str, script: Path, clients: int, seconds: float) -> tuple[int, int]:
    """Requests completed and errors (non-2xx, socket errors)."""
    completed = subprocess.run(
        ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True, text=True, check=True)
    if completed.stderr.strip():
        raise RuntimeError(f"wrk: {completed.stderr.strip()}")
    output = completed.stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return requests, errors


def model_server_command(port: int, workers: int, app: Path = ROOT / "app") -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(app), "MODEL_PATH": str(MODEL), "MODEL_NAME": "iris",
           "MODEL_PORT": str(port), "MODEL_HOST": "127.0.0.1", "MODEL_WORKERS": str(workers),
           "MODEL_SHA256": hashlib.sha256(MODEL.read_bytes()).hexdigest()}
    return [sys.executable, "-m", "model_server"], env


def measure(name: str, command: list[str], env: dict[str, str], port: int, ready_path: str, clients: int,
            seconds: float, workdir: Path, with_metrics: bool) -> CpuCost:
    script = workdir / "infer.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = [=[{BODY}]=]\n"
                      "wrk.headers['Content-Type'] = 'application/json'\n")
    url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
    with (workdir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(port, process, ready_path)
        run_wrk(url, script, clients, 2)  # warm-up: connections, caches, lazily built paths
        predict_before = predict_totals(port) if with_metrics else (0.0, 0)
        cpu_before = cpu_seconds(process.pid)
        switches_before = preemptions(list(cpu_before))
        requests, errors = run_wrk(url, script, clients, seconds)
        cpu_after = cpu_seconds(process.pid)
        switches_after = preemptions(list(cpu_after))
        predict_after = predict_totals(port) if with_metrics else (0.0, 0)
        # A process that exited or started in the window would take its CPU out of the sum, or never
        # bring it in; cheap error answers would lower the CPU per request: either voids the run.
        if set(cpu_after) != set(cpu_before):
            raise RuntimeError(f"{name}: its processes changed under load ({sorted(cpu_before)} -> "
                               f"{sorted(cpu_after)}): see {workdir / f'{name}.log'}")
        if errors:
            raise RuntimeError(f"{name}: {errors} of {requests} requests failed under load")
        user, system = (sum(times[i] for times in cpu_after.values()) - sum(times[i] for times in cpu_before.values())
                        for i in (0, 1))
        return CpuCost(name, clients, seconds, requests, errors, user + system, system,
                       predict_after[0] - predict_before[0], predict_after[1] - predict_before[1],
                       switches_after - switches_before)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure_server(seconds: float = 10, clients: int = 64, workers: int | None = None,
                   app: Path = ROOT / "app") -> CpuCost:
    """The model server (the package in `app`) on the bundled iris model."""
    with tempfile.TemporaryDirectory(prefix="cpu-cost-") as directory:
        port = free_port()
        command, env = model_server_command(port, workers or len(os.sched_getaffinity(0)), app)
        return measure("model-server", command, env, port, "/v2/health/ready", clients, seconds, Path(directory),
                       True)


@dataclass(frozen=True)
class Floor:
    name: str
    flags: list[str]  # bench/bare_server.py's
    described: str  # its row in the table
    short: str  # in the rows that compare


# What the model server is measured against: bench/bare_server.py, plain and speaking V2 JSON.
FLOORS = [Floor("bare", [], "bare asyncio + httptools server, fixed answer", "bare"),
          Floor("v2-json", ["--v2-json"], "the same, keeping headers, decoding and encoding V2 JSON",
                "V2 JSON floor")]


def measure_all(seconds: float = 10, clients: int = 64, workers: int | None = None) -> tuple[CpuCost, ...]:
    """The model server on the bundled iris model, then each floor, one after the other."""
    workers = workers or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="cpu-cost-") as directory:
        workdir = Path(directory)
        port = free_port()
        command, env = model_server_command(port, workers)
        costs = [measure("model-server", command, env, port, "/v2/health/ready", clients, seconds, workdir, True)]
        for floor in FLOORS:
            port = free_port()
            costs.append(measure(floor.name, [sys.executable, str(BARE_SERVER), str(port), str(workers), *floor.flags],
                                 dict(os.environ), port, "/", clients, seconds, workdir, False))
    return tuple(costs)


def table(server: CpuCost, *floors: CpuCost) -> str:
    """The server's costs, then each floor's (measured in the order of FLOORS)."""
    per_batch = server.requests / server.predict_calls if server.predict_calls else 0.0
    lines = [f"| CPU per request, {server.clients} clients, 1 row (process tree, user+system) | µs |",
             "| --- | --- |",
             f"| model-server, all of it | {server.cpu_us_per_request:.1f} |",
             f"| — of which the model's predict (thread CPU time; {server.predict_calls:,} calls, "
             f"{per_batch:.1f} requests each) | {server.predict_us_per_request:.1f} |",
             f"| — the server's own (everything but predict) | {server.own_us_per_request:.1f} |",
             f"| — — of which in the kernel (system time) | {server.system_us_per_request:.1f} |"]
    measured = list(zip(FLOORS, floors, strict=True))
    for floor, cost in measured:
        lines += [f"| {floor.described} | {cost.cpu_us_per_request:.1f} |",
                  f"| — of which in the kernel (system time) | {cost.system_us_per_request:.1f} |"]
    lines.append(f"| involuntary context switches per request: model-server, {', '.join(f.short for f in FLOORS)} | "
                 + ", ".join(f"{cost.preemptions_per_request:.2f}" for cost in (server, *floors)) + " |")
    lines += [f"| the server's own ÷ {floor.short} | {server.own_us_per_request / cost.cpu_us_per_request:.1f}x |"
              for floor, cost in measured]
    lines += ["", f"Requests in {server.seconds:g} s: " + ", ".join(
        f"{cost.name} {cost.requests:,} ({cost.errors} errors)" for cost in (server, *floors)) + "."]
    return "\n".join(lines)


def compare(other: Path, rounds: int, seconds: float, clients: int, workers: int | None) -> int:
    ours_us: list[float] = []
    theirs_us: list[float] = []
    for _ in range(rounds):
        for app, into in ((other, theirs_us), (ROOT / "app", ours_us)):
            cost = measure_server(seconds, clients, workers, app)
            into.append(cost.own_us_per_request)
            print(f"{'this' if app == ROOT / 'app' else str(other)}: {cost.cpu_us_per_request:.1f} µs/request, "
                  f"own {cost.own_us_per_request:.1f}, predict {cost.predict_us_per_request:.1f} "
                  f"({cost.requests / cost.seconds:,.0f} req/s)", flush=True)
    mine, base = statistics.median(ours_us), statistics.median(theirs_us)
    print(f"server's own CPU/request, median of {rounds}: {base:.1f} µs ({other}) → {mine:.1f} µs (this), "
          f"{mine - base:+.1f} µs")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="duration of the load window")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int, help="worker processes of both servers (default: the CPUs)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--against", type=Path, metavar="APP_DIR",
                        help="A/B instead: this server against another checkout's app/ directory, alternating "
                             "--rounds times (the server's own CPU/request of each, and their difference)")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if options.against:
        return compare(options.against, options.rounds, options.seconds, options.clients, options.workers)
    costs = measure_all(options.seconds, options.clients, options.workers)
    print(table(*costs))
    if options.json:
        options.json.write_text(json.dumps([asdict(cost) for cost in costs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
