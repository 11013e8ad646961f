"""Benchmark: this server against Seldon MLServer on the same model file, same machine, same run.

    python bench/run.py [--seconds 10] [--json bench/results.json]

(Canary detection time is bench/detection.py; `make bench` runs both. CPU per request against a
bare asyncio + httptools server, in the same run, is bench/cpu_cost.py; this prints its table too.)

Load comes from wrk (Debian package `wrk`) with keep-alive connections. Each server gets
the identical V2 JSON request asking for the `predict` output only, so both do the same
model work. Reported per server: requests/s and p50/p99 latency at 1, 8 and 64 clients
with 1-row requests; rows/s with 256-row requests at 8 clients; time from process start
to ready (the median of five fresh starts); and memory as PSS summed over the process tree (shared pages split between
processes, so a model shared by workers is not counted twice) and as RSS summed.

MLServer 1.7.1 + mlserver-sklearn run from their own virtualenv (bench/.venv-mlserver,
created on first use from bench/requirements-mlserver.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
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

import cpu_cost  # bench/cpu_cost.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "app" / "model.pkl"
MLSERVER_VENV = ROOT / "bench" / ".venv-mlserver"
MLSERVER_REQUIREMENTS = ROOT / "bench" / "requirements-mlserver.txt"
ROW = [5.1, 3.5, 1.4, 0.2]
CLIENTS = (1, 8, 64)
BIG_ROWS = 256
BIG_CLIENTS = 8


@dataclass
class LoadResult:
    clients: int
    rows_per_request: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int

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

    def load(self, clients: int, rows: int = 1) -> LoadResult:
        return next(r for r in self.loads if r.clients == clients and r.rows_per_request == rows)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request_body(rows: int) -> str:
    return json.dumps({"inputs": [{"name": "predict", "shape": [rows, 4], "datatype": "FP64", "data": [ROW] * rows}],
                       "outputs": [{"name": "predict"}]})


def wrk_script(directory: Path, rows: int) -> Path:
    path = directory / f"infer-{rows}.lua"
    # A level-1 long bracket: the JSON itself contains "]]".
    path.write_text(f"wrk.method = 'POST'\nwrk.body = [=[{request_body(rows)}]=]\n"
                    "wrk.headers['Content-Type'] = 'application/json'\n")
    return path


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
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return LoadResult(clients, rows, float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
                      _milliseconds(percentiles["50"]), _milliseconds(percentiles["99"]), errors)


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


def ours(port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app"), "MODEL_PATH": str(MODEL), "MODEL_NAME": "iris",
           "MODEL_PORT": str(port), "MODEL_SHA256": hashlib.sha256(MODEL.read_bytes()).hexdigest()}
    return [sys.executable, "-m", "model_server"], env, workdir


def mlserver(port: int, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
    model_dir = workdir / "iris"
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"}}))
    (workdir / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}))
    return [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(workdir)], dict(os.environ), workdir


def ensure_mlserver() -> None:
    if (MLSERVER_VENV / "bin" / "mlserver").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "--quiet", "-r", str(MLSERVER_REQUIREMENTS)],
                   check=True)


STARTS = 5


def start_to_ready(name: str, launcher: Callable[[int, Path], tuple[list[str], dict[str, str], Path]],
                   scratch: Path) -> list[float]:
    """Seconds from process start to a ready answer, for fresh starts (one sample is noise)."""
    samples = []
    for attempt in range(STARTS):
        workdir = scratch / f"{name}-start-{attempt}"
        workdir.mkdir()
        command, env, cwd = launcher(free_port(), workdir)
        port = int(env.get("MODEL_PORT") or json.loads((workdir / "settings.json").read_text())["http_port"])
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            samples.append(wait_ready(port, started, process))
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # only start-up is measured here
            process.wait()
    return samples


def measure(name: str, launcher: Callable[[int, Path], tuple[list[str], dict[str, str], Path]],
            seconds: int, scratch: Path) -> ServerResult:
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
        samples = start_to_ready(name, launcher, scratch)
        result = ServerResult(name, statistics.median(samples), memory_mb(tree, "Rss"), memory_mb(tree, "Pss"),
                              len(tree), ready_samples=samples)
        url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
        small, big = wrk_script(workdir, 1), wrk_script(workdir, BIG_ROWS)
        run_wrk(url, small, 8, 2, 1)  # warm-up
        for clients in CLIENTS:
            result.loads.append(run_wrk(url, small, clients, seconds, 1))
        result.loads.append(run_wrk(url, big, BIG_CLIENTS, seconds, BIG_ROWS))
        return result
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def table(mine: ServerResult, theirs: ServerResult) -> str:
    lines = ["| Load | model-server | MLServer 1.7.1 | ratio |", "| --- | --- | --- | --- |"]
    for clients in CLIENTS:
        a, b = mine.load(clients), theirs.load(clients)
        lines.append(f"| {clients} client{'s' if clients > 1 else ''}, 1 row: req/s | {a.requests_per_s:,.0f} "
                     f"| {b.requests_per_s:,.0f} | {a.requests_per_s / b.requests_per_s:.1f}× |")
        lines.append(f"| {clients} client{'s' if clients > 1 else ''}, 1 row: p50 / p99 ms | "
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
    errors = sum(r.errors for r in mine.loads + theirs.loads)
    lines.append("")
    lines.append(f"Errors during the run: {errors}. Machine: {os.cpu_count()} CPUs; wrk on the same host.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load step")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    ensure_mlserver()
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        scratch = Path(directory)
        mine = measure("model-server", ours, options.seconds, scratch)
        theirs = measure("mlserver", mlserver, options.seconds, scratch)
    costs = cpu_cost.measure_both(options.seconds)  # this server's CPU/request against a bare server's
    print(table(mine, theirs))
    print()
    print(cpu_cost.table(*costs))
    if options.json:
        options.json.write_text(json.dumps([asdict(mine), asdict(theirs), *map(asdict, costs)], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
