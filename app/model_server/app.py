"""Routes and handlers: health, metadata, V2 and V1 inference, metrics.

Every failure becomes `{"error": "<message>"}` with the status its ServerError carries;
anything unexpected is a 500 that names no internals beyond the exception type.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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
from model_server.runtimes.base import Inputs

JSON = "application/json"
BINARY = "application/octet-stream"
# curl -d sends form-urlencoded by default; a JSON body with that label is still JSON.
ACCEPTED_MEDIA_TYPES = {JSON, BINARY, "application/x-www-form-urlencoded"}
EXTENSIONS = ["binary_tensor_data"]


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


RouteHandler = Callable[[Request, Connection], None]


@dataclass(frozen=True)
class Route:
    """An endpoint: its name (for metrics and logs), URL pattern, allowed methods and the bound
    method that answers it. A pattern's `model` and `version` groups name the model the URL asks for."""

    endpoint: str
    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    handler: RouteHandler


def route(endpoint: str, pattern: str, method: str, handler: RouteHandler) -> Route:
    # As Starlette's Route: a GET route answers HEAD too (the HTTP layer sends no body for it).
    methods = ("GET", "HEAD") if method == "GET" else (method,)
    return Route(endpoint, re.compile(pattern), methods, handler)


V2_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
# A path under a model that matches no route still names the model: say when that model is not served.
MODEL_PATH = re.compile(r"/v[12]/models/(?P<model>[^/:]+)(?::predict)?(?:/versions/(?P<version>[^/]+))?(?:/.*)?")


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
        self._output_sets = {name: frozenset({name}) for name in model.outputs}  # one output asked for, made once
        self._metadata = orjson.dumps({
            "name": model.name,
            "versions": [model.version],
            "platform": model.runtime.platform,
            "inputs": [spec.metadata() for spec in model.inputs],
            "outputs": [spec.metadata() for spec in model.outputs.values()],
            "parameters": {"runtime": model.runtime.kind, "device": model.runtime.device},
        })
        self._server_metadata = orjson.dumps({"name": "model-server", "version": __version__,
                                              "extensions": EXTENSIONS})
        # Tried in order; a path matching none is a 404.
        self._routes = (
            route("live", r"/v2/health/live", "GET", self._live),
            route("ready", r"/v2/health/ready", "GET", self._ready),
            route("server_metadata", r"/v2", "GET", self._server_meta),
            route("metrics", r"/metrics", "GET", self._metrics),
            route("model_metadata", V2_MODEL, "GET", self._model_meta),
            route("model_ready", V2_MODEL + r"/ready", "GET", self._ready),
            route("infer", V2_MODEL + r"/infer", "POST", self._infer),
            route("v1_predict", r"/v1/models/(?P<model>[^/]+):predict", "POST", self._v1_predict),
            route("v1_model", r"/v1/models/(?P<model>[^/:]+)", "GET", self._v1_model),
        )

    # -- dispatch ----------------------------------------------------------------

    def handle(self, request: Request, connection: Connection) -> None:
        endpoint = "unknown"
        try:
            path = request.path
            if path == self._infer_path and request.method == "POST":  # the hot path skips routing
                endpoint = "infer"
                self._infer(request, connection)
                return
            found = self._route(path)
            endpoint = found.endpoint
            if request.method not in found.methods:
                raise MethodNotAllowed(f"{request.method} is not allowed on {path}; use {' or '.join(found.methods)}",
                                       found.methods)
            found.handler(request, connection)
        except Exception as error:  # every failure is answered; _answer_error tells a client's from ours
            self._answer_error(request, connection, endpoint, error)

    def _route(self, path: str) -> Route:
        normalized = "/" + "/".join(unquote(part) for part in path.strip("/").split("/"))
        for candidate in self._routes:
            match = candidate.pattern.fullmatch(normalized)
            if match:
                groups = match.groupdict()
                if "model" in groups:
                    self._check_model(groups["model"], groups.get("version"))
                return candidate
        named = MODEL_PATH.fullmatch(normalized)
        if named:
            self._check_model(named["model"], named["version"])
        raise NotFound(f"no endpoint at {path}; see /v2 for this server and /v2/models/{self.model.name}")

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.model.name:
            raise NotFound(f"model '{name}' is not served here; this server serves '{self.model.name}'")
        if version is not None and version != self.model.version:
            raise NotFound(f"model '{name}' has no version '{version}'; it serves version '{self.model.version}'")

    # -- handlers ------------------------------------------------------------------

    def _live(self, request: Request, connection: Connection) -> None:
        self._finish(request, connection, "live", 200, b'{"live":true}')

    def _ready(self, request: Request, connection: Connection) -> None:
        if not self.state.ready:
            raise NotReady("shutting down" if self.state.draining else "the model is not loaded yet")
        self._finish(request, connection, "ready", 200, b'{"ready":true}')

    def _server_meta(self, request: Request, connection: Connection) -> None:
        self._finish(request, connection, "server_metadata", 200, self._server_metadata)

    def _model_meta(self, request: Request, connection: Connection) -> None:
        self._finish(request, connection, "model_metadata", 200, self._metadata)

    def _v1_model(self, request: Request, connection: Connection) -> None:
        body = orjson.dumps({"name": self.model.name, "ready": self.state.ready})
        self._finish(request, connection, "v1_model", 200, body)

    def _metrics(self, request: Request, connection: Connection) -> None:
        self._finish(request, connection, "metrics", 200, self.metrics.render(), METRICS_CONTENT_TYPE)

    def _infer(self, request: Request, connection: Connection) -> None:
        self._check_body_type(request)
        header_length = request.headers.get(protocol.BINARY_HEADER)
        if header_length is not None and not header_length.isdigit():
            raise BadRequest(f"Inference-Header-Content-Length: expected a byte count, got {header_length!r}")
        decoded = protocol.decode_v2(self.model, request.body, int(header_length) if header_length else None)

        def answer(results: dict[str, np.ndarray]) -> tuple[bytes, str, dict[str, str] | None]:
            body, header_size = protocol.encode_v2(self.model, decoded, results)
            if header_size is None:
                return body, JSON, None
            return body, BINARY, {protocol.BINARY_HEADER: str(header_size)}

        outputs = decoded.outputs  # checked against the model's outputs by the decoder
        wanted = self._output_sets[next(iter(outputs))] if len(outputs) == 1 else frozenset(outputs)
        self._predict(request, connection, "infer", decoded.id, decoded.inputs, wanted, answer)

    def _v1_predict(self, request: Request, connection: Connection) -> None:
        self._check_body_type(request)
        inputs = protocol.decode_v1(self.model, request.body)
        output = self.model.runtime.v1_output
        self._predict(request, connection, "v1_predict", None, inputs, frozenset({output}),
                      lambda results: (protocol.encode_v1(results[output]), JSON, None))

    def _predict(self, request: Request, connection: Connection, endpoint: str, request_id: str | None,
                 inputs: Inputs, outputs: frozenset[str],
                 answer: Callable[[dict[str, np.ndarray]], tuple[bytes, str, dict[str, str] | None]]) -> None:
        """Queue the inputs for a batch; when it is done, log a sample and answer with `answer`'s encoding."""
        future = self.batcher.submit(inputs, outputs)
        inflight = self.metrics.inflight
        inflight.inc()

        def done(_: object) -> None:
            inflight.dec()
            try:
                results = future.result()
                body, content_type, headers = answer(results)
                self._log_prediction(request_id, inputs, results)
                self._finish(request, connection, endpoint, 200, body, content_type, headers)
            except Exception as error:  # as in handle: the model's failures are answered the same way
                self._answer_error(request, connection, endpoint, error)

        future.add_done_callback(done)

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _check_body_type(request: Request) -> None:
        headers = request.headers
        if headers.get("content-type", JSON) in ACCEPTED_MEDIA_TYPES and "content-encoding" not in headers:
            return  # what clients send: the checks below would find nothing to refuse
        media_type = headers.get("content-type", JSON).split(";", 1)[0].strip().lower()
        if media_type not in ACCEPTED_MEDIA_TYPES:
            raise UnsupportedMediaType(f"Content-Type {media_type} is not accepted; send {JSON} "
                                       f"(or {BINARY} with the binary tensor extension)")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding} is not accepted; send the body uncompressed")

    def _log_prediction(self, request_id: str | None, inputs: Inputs, results: dict[str, np.ndarray]) -> None:
        if self.prediction_log.sampled():
            # One input is logged as its array, as before there were models of several.
            logged = next(iter(inputs.values())) if len(inputs) == 1 else inputs
            self.prediction_log.write(self.model.name, self.model.version, request_id, logged, results)

    def _answer_error(self, request: Request, connection: Connection, endpoint: str, error: Exception) -> None:
        """The one place a failure becomes an answer: a ServerError with its status and message, anything
        else a 500 naming only the exception's type (its traceback goes to the server log)."""
        if isinstance(error, ServerError):
            headers = {"allow": ", ".join(error.allowed)} if isinstance(error, MethodNotAllowed) else None
            self._finish(request, connection, endpoint, error.status, error_body(error.message), JSON, headers)
            return
        traceback.print_exception(error, file=sys.stderr)
        message = f"internal error ({type(error).__name__}); see the server log"
        self._finish(request, connection, endpoint, 500, error_body(message))

    def _finish(self, request: Request, connection: Connection, endpoint: str, status: int, body: bytes,
                content_type: str = JSON, headers: dict[str, str] | None = None) -> None:
        connection.respond(request, status, body, content_type, headers)
        elapsed = time.perf_counter() - request.started
        self.metrics.observe_request(endpoint, status, elapsed)
        method = request.method
        if self.access_log.request(method, request.path, endpoint, status, elapsed, len(request.body),
                                   0 if method == "HEAD" else len(body)):
            connection.loop.call_soon(self.access_log.flush)
