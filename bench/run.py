"""Benchmark: this server against its peers, one runtime at a time, on the same model files, on the
same machine, in the same run.

    python bench/run.py [--seconds 10] [--runtimes sklearn,xgboost,lightgbm,onnx,onnx-mlp] [--json bench/results.json]

(Canary detection time is bench/detection.py; `make bench` runs both. CPU per request against a
bare asyncio + httptools server and the same server speaking V2 JSON, in the same run, is
bench/cpu_cost.py; this prints its table too.)

Load comes from wrk (Debian package `wrk`) with keep-alive connections. Reported per server:
requests/s and p50/p99 latency at 1, 8 and 64 clients with 1-row requests; rows/s with 256-row
requests at 8 clients; time from process start to ready (the median of five fresh starts, taken
in turns with the peer's, so a slow spell of the machine falls on both); and
memory as PSS summed over the process tree (shared pages split between processes, so a model
shared by workers is not counted twice) and as RSS summed.

What each runtime is compared with is the table RUNTIMES below:

- scikit-learn, XGBoost, LightGBM: Seldon MLServer 1.7.1 with mlserver-sklearn, mlserver-xgboost
  and mlserver-lightgbm, serving the same model file. Both servers get the same input tensor and
  are asked for one output each, the same array from the same model call, so both do the same model
  work: `predict` for scikit-learn; for the boosters, MLServer's `predict` (mlserver-xgboost loads a
  Booster's file as an XGBRegressor, whose predict is the booster's output, and mlserver-lightgbm
  answers Booster.predict: the class probabilities, for these multiclass examples) and this server's
  `predict_proba` (the same probabilities). Before the load, one request with three different rows
  to each server checks that the two answers agree. MLServer's XGBoost and LightGBM run with one
  OpenMP thread per process, as this server's do (ONE_THREAD below: they are faster so).
- ONNX: MLServer has no ONNX runtime (SeldonIO/MLServer#2360). The ceiling is ONNX Runtime's
  InferenceSession.run called in-process, with no HTTP, on the batches the server formed: for each
  load step, the mean rows per predict call the server made in it (its model_server_batch_rows
  histogram, read from /metrics before and after the step), run in a loop by min(clients, workers)
  processes (the server's worker processes the clients can keep busy), each with a session made by
  the server's own code (runtimes/onnx.py's create_session: MODEL_THREADS intra-op threads, no
  spinning). The share is the server's rows/s over the ceiling's. (The alternative, 1-row calls
  times the concurrency, would be a lower ceiling whenever the server batches.) The ceiling's
  processes have the CPUs to themselves, while the server shares them with wrk.

MLServer 1.7.1 and its runtimes run from their own virtualenv (bench/.venv-mlserver, on a Python
below 3.13, which MLServer needs), created on first use from bench/requirements-mlserver.txt and
brought up to date when that file changes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import cpu_cost  # bench/cpu_cost.py, beside this file
from cpu_cost import process_tree

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
EXAMPLES = APP / "examples"
MLSERVER_VENV = ROOT / "bench" / ".venv-mlserver"
MLSERVER_REQUIREMENTS = ROOT / "bench" / "requirements-mlserver.txt"
MLSERVER = "MLServer 1.7.1"
ONNX_CEILING = "ONNX Runtime in-process"
MODEL_NAME = "iris"
ROW = [5.1, 3.5, 1.4, 0.2]
CHECK_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]  # one of each class
CLIENTS = (1, 8, 64)
BIG_ROWS = 256
BIG_CLIENTS = 8
STARTS = 5
CEILING_SECONDS = 3.0


@dataclass(frozen=True)
class Runtime:
    """One runtime's comparison: the model file, the request, and what the server is measured against."""

    name: str
    model: Path
    datatype: str  # the request's one input tensor
    input: str  # its name (an ONNX graph names its inputs; the other runtimes take any name)
    output: str  # the output this server is asked for
    mlserver: str | None = None  # MLServer's runtime class; None: compared with ONNX Runtime in-process
    mlserver_output: str = "predict"  # MLServer's name for the same array
    mlserver_file: str | None = None  # the file's name in MLServer's model directory (default: its own)
    mlserver_env: tuple[tuple[str, str], ...] = ()  # set in MLServer's environment


# MLServer has no setting for its runtimes' library threads, and OpenMP's default is one per CPU in
# each process; OMP_NUM_THREADS=1 gives it this server's one thread per process (MODEL_THREADS is the
# CPUs over the workers). On the 2-CPU build machine MLServer's XGBoost and LightGBM were 2 to 50
# times faster with it (OpenMP threads spin against its HTTP process and wrk): the comparison is with
# the faster MLServer. scikit-learn's MLServer runs with its defaults, as it always has here.
ONE_THREAD = (("OMP_NUM_THREADS", "1"),)


RUNTIMES = (
    Runtime("sklearn", APP / "model.pkl", "FP64", "predict", "predict", "mlserver_sklearn.SKLearnModel",
            mlserver_file="model.joblib"),
    Runtime("xgboost", EXAMPLES / "xgboost" / "model.ubj", "FP32", "input-0", "predict_proba",
            "mlserver_xgboost.XGBoostModel", mlserver_env=ONE_THREAD),
    Runtime("lightgbm", EXAMPLES / "lightgbm" / "model.txt", "FP64", "input-0", "predict_proba",
            "mlserver_lightgbm.LightGBMModel", mlserver_env=ONE_THREAD),
    Runtime("onnx", EXAMPLES / "onnx" / "model.onnx", "FP32", "X", "probabilities"),
    Runtime("onnx-mlp", EXAMPLES / "onnx-mlp" / "model.onnx", "FP32", "X", "probabilities"),
)


@dataclass
class LoadResult:
    clients: int
    rows_per_request: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    batch_rows: float | None = None  # mean rows per predict call (this server's metrics), where known

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


@dataclass
class ServerResult:
    name: str
    ready_s: float
    rss_mb: float
    pss_mb: float
    processes: int
    loads: list[LoadResult] = field(default_factory=list)
    ready_samples: list[float] = field(default_factory=list)
    answer: list[Any] = field(default_factory=list)  # the output for CHECK_ROWS, flattened
    started: dict[str, Any] = field(default_factory=dict)  # this server's model_loaded line

    def load(self, clients: int, rows: int = 1) -> LoadResult:
        return next(r for r in self.loads if r.clients == clients and r.rows_per_request == rows)


@dataclass
class CeilingResult:
    """ONNX Runtime in-process on the batch size the server formed at one load step."""

    clients: int
    rows_per_request: int
    batch_rows: int
    processes: int
    rows_per_s: float


Launcher = Callable[[int, Path], tuple[list[str], dict[str, str], Path]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, script: Path, clients: int, seconds: int, rows: int) -> LoadResult:
    completed = subprocess.run(
        ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True)
    if completed.stderr.strip():  # wrk reports a broken script on stderr and then sends GETs
        raise RuntimeError(f"wrk: {completed.stderr.strip()}")
    output = completed.stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)[ \t]*$", output, re.M))
    if len(percentiles) < 2:  # no request answered in the whole step
        raise RuntimeError(f"wrk reported no latencies at {clients} clients:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return LoadResult(clients, rows, float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
                      _milliseconds(percentiles["50"]), _milliseconds(percentiles["99"]), errors)


def memory_mb(pids: list[int], field: str) -> float:
    """Sum of one /proc/<pid>/smaps_rollup field (Rss or Pss) over the processes, in MB."""
    total_kb = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]
    return total_kb / 1024


def wait_ready(port: int, started: float, process: subprocess.Popen[bytes], timeout: float = 120) -> float:
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"server not ready within {timeout} s")


def request_body(runtime: Runtime, rows: list[list[float]], output: str) -> str:
    return json.dumps({"inputs": [{"name": runtime.input, "shape": [len(rows), len(rows[0])],
                                   "datatype": runtime.datatype, "data": rows}],
                       "outputs": [{"name": output}]})


def wrk_script(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.lua"
    # A level-1 long bracket: the JSON itself contains "]]".
    path.write_text(f"wrk.method = 'POST'\nwrk.body = [=[{body}]=]\n"
                    "wrk.headers['Content-Type'] = 'application/json'\n")
    return path


def http_get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.read()


def infer(port: int, body: str, output: str) -> list[Any]:
    """One request; the named output's data, flattened (a refusal is an error, not a figure)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", f"/v2/models/{MODEL_NAME}/infer", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"the check request was answered {response.status}: {payload[:300]!r}")
    tensor = next(o for o in json.loads(payload)["outputs"] if o["name"] == output)
    data = tensor["data"]
    while data and isinstance(data[0], list):
        data = [value for row in data for value in row]
    return list(data)


def agree(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(a, b, strict=False))


def batch_stats(port: int) -> tuple[float, float]:
    """This server's predict calls so far: (rows summed, calls)."""
    text = http_get(port, "/metrics").decode()
    found = dict(re.findall(r"^model_server_batch_rows_(sum|count) (\S+)$", text, re.M))
    return float(found.get("sum", 0)), float(found.get("count", 0))


def started_line(log: Path) -> dict[str, Any]:
    for line in log.read_text(errors="replace").splitlines():
        if '"model_loaded"' in line:
            return dict(json.loads(line))
    return {}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ours(runtime: Runtime, port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
    env = {**os.environ, "PYTHONPATH": str(APP), "MODEL_PATH": str(runtime.model), "MODEL_NAME": MODEL_NAME,
           "MODEL_PORT": str(port), "MODEL_SHA256": sha256(runtime.model)}
    return [sys.executable, "-m", "model_server"], env, workdir


def mlserver(runtime: Runtime, port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
    model_dir = workdir / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    file_name = runtime.mlserver_file or runtime.model.name
    shutil.copy(runtime.model, model_dir / file_name)
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": runtime.mlserver,
        "parameters": {"uri": f"./{file_name}", "version": "1"}}))
    (workdir / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}))
    env = {**os.environ, **dict(runtime.mlserver_env)}
    return [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(workdir)], env, workdir


def mlserver_python() -> str:
    """MLServer 1.7.1 needs Python below 3.13: this one if it is, else an older one on PATH."""
    if sys.version_info < (3, 13):
        return sys.executable
    for name in ("python3.12", "python3.11", "python3.10"):
        if found := shutil.which(name):
            return found
    raise SystemExit("MLServer 1.7.1 needs Python below 3.13: install python3.12 or python3.11")


def ensure_mlserver() -> None:
    """The MLServer venv, (re)installed when bench/requirements-mlserver.txt changed since."""
    stamp = MLSERVER_VENV / ".requirements.sha256"
    wanted = sha256(MLSERVER_REQUIREMENTS)
    if (MLSERVER_VENV / "bin" / "mlserver").exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    if not (MLSERVER_VENV / "bin" / "python").exists():
        subprocess.run([mlserver_python(), "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "--quiet", "-r", str(MLSERVER_REQUIREMENTS)],
                   check=True)
    stamp.write_text(wanted)


def start_to_ready(launchers: dict[str, Launcher], scratch: Path) -> dict[str, list[float]]:
    """Seconds from process start to a ready answer, for fresh starts of each server (one sample is
    noise), taken in turns: one start of each, then again."""
    samples: dict[str, list[float]] = {name: [] for name in launchers}
    for attempt in range(STARTS):
        for name, launcher in launchers.items():
            workdir = scratch / f"{name}-start-{attempt}"
            workdir.mkdir()
            command, env, cwd = launcher(free_port(), workdir)
            port = int(env.get("MODEL_PORT") or json.loads((workdir / "settings.json").read_text())["http_port"])
            started = time.monotonic()
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                samples[name].append(wait_ready(port, started, process))
            finally:
                os.killpg(process.pid, signal.SIGKILL)  # only start-up is measured here
                process.wait()
    return samples


def measure(name: str, launcher: Launcher, runtime: Runtime, output: str, seconds: int, scratch: Path,
            ready_samples: list[float], batches: bool = False) -> ServerResult:
    """One server: memory, the check answer, then each load step (its start-up samples are taken apart,
    in turns with its peer's). With `batches`, the server is this one and the mean rows per predict
    call of each step is read from its metrics."""
    port = free_port()
    workdir = scratch / name
    workdir.mkdir()
    command, env, cwd = launcher(port, workdir)
    with (workdir / "server.log").open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, started, process)
        time.sleep(1)  # let every worker finish starting before memory is read
        tree = process_tree(process.pid)
        result = ServerResult(name, statistics.median(ready_samples), memory_mb(tree, "Rss"), memory_mb(tree, "Pss"),
                              len(tree), ready_samples=ready_samples,
                              answer=infer(port, request_body(runtime, CHECK_ROWS, output), output),
                              started=started_line(workdir / "server.log"))
        url = f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer"
        small = wrk_script(workdir, "infer-1", request_body(runtime, [ROW], output))
        big = wrk_script(workdir, f"infer-{BIG_ROWS}", request_body(runtime, [ROW] * BIG_ROWS, output))
        run_wrk(url, small, 8, 2, 1)  # warm-up
        for clients, script, rows in [*((c, small, 1) for c in CLIENTS), (BIG_CLIENTS, big, BIG_ROWS)]:
            before = batch_stats(port) if batches else (0.0, 0.0)
            load = run_wrk(url, script, clients, seconds, rows)
            if batches:
                after = batch_stats(port)
                load.batch_rows = (after[0] - before[0]) / max(after[1] - before[1], 1)
            result.loads.append(load)
        return result
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# -- the ONNX ceiling: ONNX Runtime in-process, in spawned processes (nothing of ONNX Runtime, nor
# model_server's thread settings, in this process, whose environment the servers inherit) --------

def _session_and_feed(model: str, runtime: Runtime, rows: list[list[float]],
                      threads: int) -> tuple[Any, dict[str, Any]]:
    sys.path.insert(0, str(APP))
    import numpy as np

    from model_server.datatypes import NUMERIC_DTYPES
    from model_server.runtimes.onnx import create_session

    session = create_session(Path(model).read_bytes(), threads, "cpu")
    return session, {runtime.input: np.asarray(rows, NUMERIC_DTYPES[runtime.datatype])}


def _answer(runtime: Runtime, threads: int, queue: Any) -> None:
    session, feed = _session_and_feed(str(runtime.model), runtime, CHECK_ROWS, threads)
    queue.put(session.run([runtime.output], feed)[0].ravel().tolist())


def _loop(runtime: Runtime, rows: int, threads: int, seconds: float, barrier: Any, queue: Any) -> None:
    session, feed = _session_and_feed(str(runtime.model), runtime, [ROW] * rows, threads)
    names = [runtime.output]
    for _ in range(50):  # warm-up
        session.run(names, feed)
    barrier.wait()
    calls, started = 0, time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        session.run(names, feed)
        calls += 1
    queue.put(calls * rows / (now - started))


def in_process(target: Callable[..., None], processes: int, *args: Any) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    extra = (context.Barrier(processes),) if target is _loop else ()
    children = [context.Process(target=target, args=(*args, *extra, queue)) for _ in range(processes)]
    for child in children:
        child.start()
    results: list[Any] = []
    deadline = time.monotonic() + 120
    while len(results) < len(children):
        try:
            results.append(queue.get(timeout=1))
        except Empty:
            if any(child.exitcode not in (None, 0) for child in children) or time.monotonic() > deadline:
                for child in children:
                    child.kill()
                codes = [child.exitcode for child in children]
                raise RuntimeError(f"ONNX Runtime in-process failed or hung (exit codes {codes})") from None
    for child in children:
        child.join()
    return results


def onnx_ceiling(runtime: Runtime, server: ServerResult) -> list[CeilingResult]:
    workers, threads = int(server.started["workers"]), int(server.started["threads"])
    ceilings = []
    for load in server.loads:
        batch = max(1, round(load.batch_rows or load.rows_per_request))
        processes = min(load.clients, workers)
        rates = in_process(_loop, processes, runtime, batch, threads, CEILING_SECONDS)
        ceilings.append(CeilingResult(load.clients, load.rows_per_request, batch, processes, sum(rates)))
    return ceilings


def _clients(clients: int) -> str:
    return f"{clients} client{'s' if clients > 1 else ''}"


def table(mine: ServerResult, theirs: ServerResult) -> str:
    lines = [f"| Load | model-server | {MLSERVER} | ratio |", "| --- | --- | --- | --- |"]
    for clients in CLIENTS:
        a, b = mine.load(clients), theirs.load(clients)
        lines.append(f"| {_clients(clients)}, 1 row: req/s | {a.requests_per_s:,.0f} "
                     f"| {b.requests_per_s:,.0f} | {a.requests_per_s / b.requests_per_s:.1f}× |")
        lines.append(f"| {_clients(clients)}, 1 row: p50 / p99 ms | "
                     f"{a.p50_ms:.2f} / {a.p99_ms:.2f} | {b.p50_ms:.2f} / {b.p99_ms:.2f} | "
                     f"p99 {b.p99_ms / a.p99_ms:.1f}× lower |")
    a, b = mine.load(BIG_CLIENTS, BIG_ROWS), theirs.load(BIG_CLIENTS, BIG_ROWS)
    lines.append(f"| {BIG_CLIENTS} clients, {BIG_ROWS} rows: rows/s | {a.rows_per_s:,.0f} | {b.rows_per_s:,.0f} "
                 f"| {a.rows_per_s / b.rows_per_s:.1f}× |")
    lines.append(f"| start to ready (median of {STARTS}), s | {mine.ready_s:.2f} | {theirs.ready_s:.2f} | "
                 f"{theirs.ready_s / mine.ready_s:.1f}× faster |")
    lines.append(f"| resident memory (RSS, summed), MB | {mine.rss_mb:.0f} ({mine.processes} processes) | "
                 f"{theirs.rss_mb:.0f} ({theirs.processes} processes) | {theirs.rss_mb / mine.rss_mb:.1f}× less |")
    lines.append(f"| memory with shared pages counted once (PSS), MB | {mine.pss_mb:.0f} | {theirs.pss_mb:.0f} "
                 f"| {theirs.pss_mb / mine.pss_mb:.1f}× less |")
    lines.append("")
    lines.append(footer(mine.loads + theirs.loads))
    return "\n".join(lines)


def ceiling_table(mine: ServerResult, ceilings: list[CeilingResult]) -> str:
    lines = [f"| Load | model-server rows/s (p50 / p99 ms) | rows per predict call | {ONNX_CEILING}, rows/s "
             "(processes) | share of the ceiling |", "| --- | --- | --- | --- | --- |"]
    for load, ceiling in zip(mine.loads, ceilings, strict=True):
        rows = f"{load.rows_per_request} row{'s' if load.rows_per_request > 1 else ''}"
        lines.append(f"| {_clients(load.clients)}, {rows} | {load.rows_per_s:,.0f} ({load.p50_ms:.2f} / "
                     f"{load.p99_ms:.2f}) | {load.batch_rows:.1f} | {ceiling.rows_per_s:,.0f} ({ceiling.processes}) "
                     f"| {load.rows_per_s / ceiling.rows_per_s:.0%} |")
    lines.append(f"| start to ready (median of {STARTS}), s | {mine.ready_s:.2f} | | | |")
    lines.append(f"| memory, RSS summed / PSS, MB | {mine.rss_mb:.0f} / {mine.pss_mb:.0f} ({mine.processes} processes) "
                 "| | | |")
    lines.append("")
    lines.append(footer(mine.loads) + f" The ceiling runs each batch size {CEILING_SECONDS:g} s, "
                 f"{mine.started.get('threads')} intra-op thread(s) per process, as the server's "
                 f"{mine.started.get('workers')} workers.")
    return "\n".join(lines)


def footer(loads: list[LoadResult]) -> str:
    return (f"Errors during the run: {sum(r.errors for r in loads)}. Machine: {os.cpu_count()} CPUs; "
            "wrk on the same host.")


def compare(runtime: Runtime, seconds: int, scratch: Path) -> tuple[str, dict[str, Any]]:
    """Measure one runtime's server and its peer; the section to print and the raw results."""
    my_name, their_name = f"{runtime.name}-model-server", f"{runtime.name}-mlserver"
    launchers: dict[str, Launcher] = {my_name: functools.partial(ours, runtime)}
    if runtime.mlserver is not None:
        launchers[their_name] = functools.partial(mlserver, runtime)
    starts = start_to_ready(launchers, scratch)
    mine = measure(my_name, launchers[my_name], runtime, runtime.output, seconds, scratch, starts[my_name],
                   batches=True)
    heading = f"### {runtime.name} ({runtime.model.relative_to(ROOT)})\n\n"
    if runtime.mlserver is None:
        ceilings = onnx_ceiling(runtime, mine)
        expected = in_process(_answer, 1, runtime, int(mine.started["threads"]))[0]
        if not agree(mine.answer, expected):
            raise RuntimeError(f"{runtime.name}: the server answers {mine.answer}, ONNX Runtime {expected}")
        return heading + ceiling_table(mine, ceilings), {"model-server": asdict(mine),
                                                         "onnxruntime": [asdict(c) for c in ceilings]}
    theirs = measure(their_name, launchers[their_name], runtime, runtime.mlserver_output, seconds, scratch,
                     starts[their_name])
    if not agree(mine.answer, theirs.answer):
        raise RuntimeError(f"{runtime.name}: the servers answer differently: {mine.answer} and {theirs.answer}")
    return heading + table(mine, theirs), {"model-server": asdict(mine), "mlserver": asdict(theirs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load step")
    parser.add_argument("--runtimes", default=",".join(r.name for r in RUNTIMES),
                        help="which to measure, comma-separated (default: all)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    options = parser.parse_args()
    chosen = options.runtimes.split(",")
    unknown = set(chosen) - {r.name for r in RUNTIMES}
    if unknown:
        parser.error(f"unknown runtimes: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    runtimes = [r for r in RUNTIMES if r.name in chosen]
    if any(r.mlserver for r in runtimes):
        ensure_mlserver()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        for runtime in runtimes:
            section, results[runtime.name] = compare(runtime, options.seconds, Path(directory))
            print(section + "\n", flush=True)
    costs = cpu_cost.measure_all(options.seconds)  # this server's CPU/request against the floors'
    print(cpu_cost.table(*costs))
    results["cpu_per_request"] = [asdict(cost) for cost in costs]
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
