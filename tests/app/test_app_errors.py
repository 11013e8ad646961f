"""One path from a failure to its answer: ModelApp answers a handler that raises at once and a
prediction that fails later the same way (a ServerError with its status and message, anything else
a 500 naming only the exception's type). Driven in process, with fakes for what it answers through."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import numpy as np
import pytest

from model_server.app import ModelApp
from model_server.batching import Batcher
from model_server.errors import BadRequest
from model_server.http import Connection, Request, ServerState
from model_server.logs import AccessLog, PredictionLog
from model_server.metrics import Metrics
from model_server.model import Model, load_model
from model_server.settings import ServerSettings
from tests.support.server import write_model

INTERNAL = {"error": "internal error (RuntimeError); see the server log"}
INFER_BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]})


class RecordingConnection:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.answers: list[tuple[int, Any, dict[str, str] | None]] = []

    def respond(self, request: Request, status: int, body: bytes, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, json.loads(body), headers))


class Gauge:
    def inc(self) -> None: ...

    def dec(self) -> None: ...


class BrokenMetrics:
    inflight = Gauge()

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None: ...

    @staticmethod
    def render() -> bytes:
        raise RuntimeError("metrics backend down")


class FailingBatcher:
    """Every prediction fails with `error`, after the handler has returned (as a batch would)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def submit(self, inputs: dict[str, np.ndarray], outputs: frozenset[str]) -> asyncio.Future[dict[str, np.ndarray]]:
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_exception, self.error)
        return future


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    path, sha256 = write_model(tmp_path_factory.mktemp("model"))
    return load_model(ServerSettings(path=path, sha256=sha256, name="iris"))


def answers_to(model: Model, request: Request, error: Exception | None = None) -> list[Any]:
    async def scenario() -> list[Any]:
        batcher = FailingBatcher(error or RuntimeError("bug"))
        access_log = AccessLog(False, fd=2)  # off; an fd given, as pytest's captured stdout has none
        app = ModelApp(model, cast(Batcher, batcher), ServerState(1024, 30, 30),
                       cast(Metrics, BrokenMetrics()), access_log, PredictionLog(None, 0.0))
        connection = RecordingConnection()
        app.handle(request, cast(Connection, connection))
        await asyncio.sleep(0.01)  # the failed prediction's callback
        return connection.answers

    return asyncio.run(scenario())


def test_a_handler_failing_at_once_is_a_500_naming_only_the_exception_type(
        model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    assert answers_to(model, Request("GET", b"/metrics")) == [(500, INTERNAL, None)]
    assert "metrics backend down" in capsys.readouterr().err  # the traceback goes to the server log


def test_a_prediction_failing_later_is_answered_the_same_way(model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    infer = Request("POST", b"/v2/models/iris/infer", {"content-type": "application/json"}, INFER_BODY.encode())
    assert answers_to(model, infer) == [(500, INTERNAL, None)]
    assert "RuntimeError: bug" in capsys.readouterr().err
    rejected = answers_to(model, infer, BadRequest("inputs[0].data: no"))
    assert rejected == [(400, {"error": "inputs[0].data: no"}, None)]


def test_a_wrong_method_is_a_405_with_allow(model: Model) -> None:
    answered = answers_to(model, Request("POST", b"/v2/health/live"))
    assert answered == [(405, {"error": "POST is not allowed on /v2/health/live; use GET or HEAD"},
                         {"allow": "GET, HEAD"})]

