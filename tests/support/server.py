"""A real model server process on 127.0.0.1, serving a model fitted into a folder of the test's."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from train import train

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def server_env(model_path: Path, sha256: str | None, port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    env.update({"PYTHONPATH": str(APP_DIR), "MODEL_PATH": str(model_path), "MODEL_NAME": "iris",
                "MODEL_PORT": str(port), "MODEL_HOST": "127.0.0.1", "MODEL_WORKERS": "1", "MODEL_DRAIN_S": "0.5"})
    if sha256 is not None:
        env["MODEL_SHA256"] = sha256
    env.update(overrides)
    return env


def start_server(tmp_path: Path, model_path: Path | None = None, sha256: str | None = None,
                 wait: bool = True, **overrides: str) -> Server:
    if model_path is None:
        model_path, sha256 = write_model(tmp_path)
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    env = server_env(model_path, sha256, port, **overrides)
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "model_server"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp_path)
    server = Server(process, port, log_path, env)
    if wait:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
            try:
                if server.request("GET", "/v2/health/ready", timeout=1).status == 200:
                    return server
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server not ready within 30 s:\n{server.log()}")
    return server
