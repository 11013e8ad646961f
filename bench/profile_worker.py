"""A sampling profile of one model-server worker under load: where its CPU goes.

    python bench/profile_worker.py [--seconds 10] [--clients 64] [--out bench/profile] [--top 25]

Starts the server on the bundled iris model (one worker per CPU, as in production), puts it
under wrk load (1-row V2 requests, as bench/run.py sends), and samples one worker with py-spy
(pinned in bench/requirements-profile.txt; `make profile` installs it). Writes to --out:

- worker.svg: a flame graph (open it in a browser; click to zoom);
- worker.collapsed: the raw samples, one collapsed stack per line (`frame;frame;... count`), which
  flamegraph tools, speedscope and this script read;
- top.txt: the functions with the most samples, by self time (the function itself was running)
  and by total time (it was on the stack), as shares of the worker's busy samples.

Idle samples (the event loop waiting in epoll) are not taken, so the shares are of busy time. They
are shares of wall-clock time while busy, not of CPU time: a worker the kernel has preempted (say,
for the client its write just woke) is sampled where it stopped, so on a crowded machine the socket
writes look bigger than their CPU cost; bench/cpu_cost.py measures CPU. py-spy pauses the worker
for each sample to read a consistent stack (PROFILE_NONBLOCKING=1 does not, and reads some stacks
torn), which slows it a little: read the shares, not the rates.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "app" / "model.pkl"
BODY = ('{"inputs":[{"name":"predict","shape":[1,4],"datatype":"FP64","data":[[5.1,3.5,1.4,0.2]]}],'
        '"outputs":[{"name":"predict"}]}')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("profile needs py-spy: pip install -r bench/requirements-profile.txt")
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return sorted(found)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready within {timeout} s")


def frame_name(frame: str) -> str:
    """`respond (model_server/http.py:287)` → `respond (model_server/http.py:287)`, with site-packages
    and the project's directory cut from the path."""
    return re.sub(r"\((?:[^()]*/)?(site-packages|app|lib/python3\.\d+)/", "(", frame)


def top_list(collapsed: Path, count: int) -> str:
    self_samples: collections.Counter[str] = collections.Counter()
    total_samples: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        weight = int(number)
        frames = [frame_name(frame) for frame in stack.split(";")]
        samples += weight
        self_samples[frames[-1]] += weight
        for frame in set(frames):
            total_samples[frame] += weight
    if not samples:
        return "no samples (was the worker busy?)\n"
    lines = [f"{samples} busy samples of one worker", "", f"Top {count} by self time (the function itself running):",
             "  self%  total%  function"]
    lines += [f"  {100 * n / samples:5.1f}  {100 * total_samples[name] / samples:6.1f}  {name}"
              for name, n in self_samples.most_common(count)]
    lines += ["", f"Top {count} by total time (the function on the stack):", "  total%  self%  function"]
    lines += [f"  {100 * n / samples:6.1f}  {100 * self_samples[name] / samples:5.1f}  {name}"
              for name, n in total_samples.most_common(count)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="how long each recording samples")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    spy = py_spy()
    if shutil.which("wrk") is None:
        print("profile needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app"), "MODEL_PATH": str(MODEL), "MODEL_NAME": "iris",
           "MODEL_HOST": "127.0.0.1", "MODEL_PORT": str(port),
           "MODEL_SHA256": hashlib.sha256(MODEL.read_bytes()).hexdigest()}
    with tempfile.TemporaryDirectory(prefix="profile-") as directory:
        script = Path(directory) / "infer.lua"
        script.write_text(f"wrk.method = 'POST'\nwrk.body = [=[{BODY}]=]\n"
                          "wrk.headers['Content-Type'] = 'application/json'\n")
        server = subprocess.Popen([sys.executable, "-m", "model_server"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_ready(port, server)
            workers = children_of(server.pid) or [server.pid]
            worker = workers[0]
            # Load for both recordings (the flame graph, then the raw stacks) and a second on each side.
            load = subprocess.Popen(
                ["wrk", f"-t{min(options.clients, 2)}", f"-c{options.clients}", f"-d{2 * options.seconds + 3}s",
                 "-s", str(script), f"http://127.0.0.1:{port}/v2/models/iris/infer"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            common = ["record", "--pid", str(worker), "--duration", str(options.seconds), "--rate", str(options.rate),
                      "--function"] + (["--nonblocking"] if os.environ.get("PROFILE_NONBLOCKING") else [])
            svg, collapsed = options.out / "worker.svg", options.out / "worker.collapsed"
            subprocess.run([spy, *common, "--format", "flamegraph", "--output", str(svg)], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run([spy, *common, "--format", "raw", "--output", str(collapsed)], check=True,
                           stdout=subprocess.DEVNULL)
            load.wait()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    report = top_list(collapsed, options.top)
    (options.out / "top.txt").write_text(report)
    print(report)
    print(f"flame graph: {svg}\nraw stacks: {collapsed}\ntop list: {options.out / 'top.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
