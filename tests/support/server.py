"""A real model server process on 127.0.0.1, serving a model fitted into a folder of the test's.

The server binds port 0 (MODEL_PORT=0) and its start-up line says which port it got: no port is
picked in advance, so none can be taken by another process between picking and binding.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from train import train

APP_DIR = Path(__file__).resolve().parents[2] / "app"
STARTUP_S = 30  # loading scikit-learn and the model, on a busy machine


def write_model(directory: Path, name: str = "model.pkl") -> tuple[Path, str]:
    path = directory / name
    joblib.dump(train(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10) -> Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def infer(self, document: dict[str, Any], model: str = "iris") -> Response:
        return self.request("POST", f"/v2/models/{model}/infer", document, {"Content-Type": "application/json"})

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def abandon(self) -> None:
        """Stop a server the test gives up on. SIGTERM first: the supervisor takes its workers down
        with it, which killing it would leave running."""
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.process.kill()


def server_env(model_path: Path, sha256: str | None, port: int = 0, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    env.update({"PYTHONPATH": str(APP_DIR), "MODEL_PATH": str(model_path), "MODEL_NAME": "iris",
                "MODEL_PORT": str(port), "MODEL_HOST": "127.0.0.1", "MODEL_WORKERS": "1", "MODEL_DRAIN_S": "0.5"})
    if sha256 is not None:
        env["MODEL_SHA256"] = sha256
    env.update(overrides)
    return env


def listening_port(log: str) -> int | None:
    """The port in the server's start-up line (`"event": "model_loaded"`, `"listen": "host:port"`)."""
    for line in log.split("\n")[:-1]:  # complete lines only: the last may be still being written
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "model_loaded":
                return int(entry["listen"].rsplit(":", 1)[1])
    return None


def start_server(tmp_path: Path, model_path: Path | None = None, sha256: str | None = None,
                 wait: bool = True, **overrides: str) -> Server:
    """Start a server and return once it listens; with `wait`, once it is ready too. A server that
    exits before it listens (a refusal to start) raises with `wait`, and has port 0 without."""
    if model_path is None:
        model_path, sha256 = write_model(tmp_path)
    descriptor, name = tempfile.mkstemp(prefix="server-", suffix=".log", dir=tmp_path)
    os.close(descriptor)
    log_path = Path(name)
    env = server_env(model_path, sha256, **overrides)
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "model_server"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp_path)
    server = Server(process, 0, log_path, env)
    deadline = time.monotonic() + STARTUP_S
    while (port := listening_port(server.log())) is None:
        if process.poll() is not None:
            if wait:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            return server
        if time.monotonic() > deadline:
            server.abandon()
            raise RuntimeError(f"server not listening within {STARTUP_S} s:\n{server.log()}")
        time.sleep(0.02)
    server.port = port
    if not wait:
        return server
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if server.request("GET", "/v2/health/ready", timeout=1).status == 200:
                return server
        except OSError:
            time.sleep(0.05)
    server.abandon()
    raise RuntimeError(f"server not ready within {STARTUP_S} s:\n{server.log()}")
