"""Routes and handlers: health, metadata, V2 and V1 inference, metrics.

Every failure becomes `{"error": "<message>"}` with the status its ServerError carries;
anything unexpected is a 500 that names no internals beyond the exception type.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from urllib.parse import unquote

import numpy as np
import orjson

from model_server import __version__, protocol
from model_server.batching import Batcher
from model_server.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    NotReady,
    ServerError,
    UnsupportedMediaType,
)
from model_server.http import Connection, Request, ServerState
from model_server.logs import AccessLog, PredictionLog
from model_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from model_server.metrics import Metrics
from model_server.model import Model

JSON = "application/json"
BINARY = "application/octet-stream"
# curl -d sends form-urlencoded by default; a JSON body with that label is still JSON.
ACCEPTED_MEDIA_TYPES = {JSON, BINARY, "application/x-www-form-urlencoded"}
EXTENSIONS = ["binary_tensor_data"]


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message})


# A route: endpoint name (for metrics and logs), allowed methods, handler, model version in the URL.
Route = tuple[str, tuple[str, ...], Callable[[Request, Connection, str | None], None], str | None]


class ModelApp:
    def __init__(self, model: Model, batcher: Batcher, state: ServerState, metrics: Metrics,
                 access_log: AccessLog, prediction_log: PredictionLog) -> None:
        self.model = model
        self.batcher = batcher
        self.state = state
        self.metrics = metrics
        self.access_log = access_log
        self.prediction_log = prediction_log
        self._infer_path = f"/v2/models/{model.name}/infer"
        self._metadata = orjson.dumps({
            "name": model.name,
            "versions": [model.version],
            "platform": "sklearn",
            "inputs": [model.input.metadata()],
            "outputs": [spec.metadata() for spec in model.outputs.values()],
        })
        self._server_metadata = orjson.dumps({"name": "model-server", "version": __version__,
                                              "extensions": EXTENSIONS})

    # -- dispatch ----------------------------------------------------------------

    def handle(self, request: Request, connection: Connection) -> None:
        endpoint = "unknown"
        try:
            path = request.path
            if path == self._infer_path and request.method == "POST":  # the hot path skips routing
                endpoint = "infer"
                self._infer(request, connection, None)
                return
            endpoint, methods, handler, version = self._route(path)
            if request.method not in methods:
                raise MethodNotAllowed(f"{request.method} is not allowed on {path}; use {' or '.join(methods)}",
                                       methods)
            handler(request, connection, version)
        except ServerError as error:
            self._error(request, connection, error, endpoint)
        except Exception:
            self._internal_error(request, connection, endpoint)

    def _route(self, path: str) -> Route:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts == ["v2", "health", "live"]:
            return "live", ("GET",), self._live, None
        if parts == ["v2", "health", "ready"]:
            return "ready", ("GET",), self._ready, None
        if parts == ["v2"]:
            return "server_metadata", ("GET",), self._server_meta, None
        if parts == ["metrics"]:
            return "metrics", ("GET",), self._metrics, None
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            rest, version = parts[3:], None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            self._check_model(parts[2], version)
            if rest == []:
                return "model_metadata", ("GET",), self._model_meta, version
            if rest == ["ready"]:
                return "model_ready", ("GET",), self._ready, version
            if rest == ["infer"]:
                return "infer", ("POST",), self._infer, version
        if len(parts) == 3 and parts[:2] == ["v1", "models"]:
            name, predict = parts[2].removesuffix(":predict"), parts[2].endswith(":predict")
            self._check_model(name, None)
            if predict:
                return "v1_predict", ("POST",), self._v1_predict, None
            return "v1_model", ("GET",), self._v1_model, None
        raise NotFound(f"no endpoint at {path}; see /v2 for this server and /v2/models/{self.model.name}")

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.model.name:
            raise NotFound(f"model '{name}' is not served here; this server serves '{self.model.name}'")
        if version is not None and version != self.model.version:
            raise NotFound(f"model '{name}' has no version '{version}'; it serves version '{self.model.version}'")

    # -- handlers ------------------------------------------------------------------

    def _live(self, request: Request, connection: Connection, _: str | None) -> None:
        self._finish(request, connection, "live", 200, b'{"live":true}')

    def _ready(self, request: Request, connection: Connection, _: str | None) -> None:
        if not self.state.ready:
            raise NotReady("shutting down" if self.state.draining else "the model is not loaded yet")
        self._finish(request, connection, "ready", 200, b'{"ready":true}')

    def _server_meta(self, request: Request, connection: Connection, _: str | None) -> None:
        self._finish(request, connection, "server_metadata", 200, self._server_metadata)

    def _model_meta(self, request: Request, connection: Connection, _: str | None) -> None:
        self._finish(request, connection, "model_metadata", 200, self._metadata)

    def _v1_model(self, request: Request, connection: Connection, _: str | None) -> None:
        body = orjson.dumps({"name": self.model.name, "ready": self.state.ready})
        self._finish(request, connection, "v1_model", 200, body)

    def _metrics(self, request: Request, connection: Connection, _: str | None) -> None:
        self._finish(request, connection, "metrics", 200, self.metrics.render(), METRICS_CONTENT_TYPE)

    def _infer(self, request: Request, connection: Connection, _: str | None) -> None:
        self._check_body_type(request)
        header_length = request.headers.get(protocol.BINARY_HEADER)
        if header_length is not None and not header_length.isdigit():
            raise BadRequest(f"Inference-Header-Content-Length: expected a byte count, got {header_length!r}")
        decoded = protocol.decode_v2(self.model, request.body, int(header_length) if header_length else None)
        future = self.batcher.submit(decoded.rows, frozenset(decoded.outputs))
        self.metrics.inflight.inc()

        def done(_: object) -> None:
            self.metrics.inflight.dec()
            try:
                results = future.result()
                body, header_size = protocol.encode_v2(self.model, decoded, results)
                self._log_prediction(decoded.id, decoded.rows, results)
                if header_size is None:
                    self._finish(request, connection, "infer", 200, body)
                else:
                    self._finish(request, connection, "infer", 200, body, BINARY,
                                 {protocol.BINARY_HEADER: str(header_size)})
            except ServerError as error:
                self._error(request, connection, error, "infer")
            except Exception:
                self._internal_error(request, connection, "infer")

        future.add_done_callback(done)

    def _v1_predict(self, request: Request, connection: Connection, _: str | None) -> None:
        self._check_body_type(request)
        rows = protocol.decode_v1(self.model, request.body)
        future = self.batcher.submit(rows, frozenset({"predict"}))
        self.metrics.inflight.inc()

        def done(_: object) -> None:
            self.metrics.inflight.dec()
            try:
                results = future.result()
                self._log_prediction(None, rows, results)
                self._finish(request, connection, "v1_predict", 200, protocol.encode_v1(results["predict"]))
            except ServerError as error:
                self._error(request, connection, error, "v1_predict")
            except Exception:
                self._internal_error(request, connection, "v1_predict")

        future.add_done_callback(done)

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _check_body_type(request: Request) -> None:
        media_type = request.headers.get("content-type", JSON).split(";", 1)[0].strip().lower()
        if media_type not in ACCEPTED_MEDIA_TYPES:
            raise UnsupportedMediaType(f"Content-Type {media_type} is not accepted; send {JSON} "
                                       f"(or {BINARY} with the binary tensor extension)")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding} is not accepted; send the body uncompressed")

    def _log_prediction(self, request_id: str | None, rows: np.ndarray, results: dict[str, np.ndarray]) -> None:
        if self.prediction_log.sampled():
            self.prediction_log.write(self.model.name, self.model.version, request_id, rows, results)

    def _error(self, request: Request, connection: Connection, error: ServerError, endpoint: str) -> None:
        headers = {"allow": ", ".join(error.allowed)} if isinstance(error, MethodNotAllowed) else None
        self._finish(request, connection, endpoint, error.status, error_body(error.status, error.message),
                     JSON, headers)

    def _internal_error(self, request: Request, connection: Connection, endpoint: str) -> None:
        traceback.print_exc(file=sys.stderr)
        kind = sys.exc_info()[0]
        message = f"internal error ({kind.__name__ if kind else 'unknown'}); see the server log"
        self._finish(request, connection, endpoint, 500, error_body(500, message))

    def _finish(self, request: Request, connection: Connection, endpoint: str, status: int, body: bytes,
                content_type: str = JSON, headers: dict[str, str] | None = None) -> None:
        connection.respond(request, status, body, content_type, headers)
        elapsed = time.perf_counter() - request.started
        self.metrics.observe_request(endpoint, status, elapsed)
        if self.access_log.record({"ts": round(time.time(), 3), "method": request.method, "path": request.path,
                                   "endpoint": endpoint, "status": status, "ms": round(elapsed * 1000, 3),
                                   "bytes_in": len(request.body), "bytes_out": len(body)}):
            connection.loop.call_soon(self.access_log.flush)
