"""Model artifacts that are genuinely faulty, and the valid traffic that shows it.

Nothing here switches a fault on: each artifact is a scikit-learn estimator that loads, passes the
server's load-time probes (a row of zeros, a row of NaN) and then fails on real iris rows by
itself, the way a bad release does. Like tests/support/server.py's write_model, each is fitted into
a folder of the test's and pinned by its sha256; every one pickles only scikit-learn, numpy and the
standard library, so the server loads it with nothing extra on its path.

- `overflowing_model` answers 5xx: an element-wise exp feature written with Python's math.exp
  (np.vectorize) after a degree-4 polynomial expansion, fitted on measurements in metres. On the
  centimetres the server is sent, most rows have a term above 709 and math.exp raises
  OverflowError (numpy's exp would give inf): an exception that is not a ValueError, so a 500.
- `out_of_domain_model` answers 4xx: the arcsine-square-root transform for proportions, written
  with math.asin, fitted on features given as fractions of their maximum. Every real measurement
  in cm is above 1 and math.asin raises ValueError (math domain error): a 400
  (app/model_server/batching.py). With numpy's arcsin it would not fail at all: arcsin gives NaN,
  and the server runs scikit-learn with assume_finite=True (app/model_server/worker.py), so the
  classifier would answer 200 with NaN probabilities, a wrong answer no check sees.
- `slow_model` answers 200, late: a random forest with so many trees that one predict call takes
  longer than a latency bound (scikit-learn predicts tree by tree, in Python).

- `log_regressor` and `log_graph` answer 200 on iris rows and NaN on a negative measurement (numpy's
  and ONNX Runtime's logarithms give NaN out of their domain, silently): a prediction the server must answer with a 500,
  the model's fault, rather than a 200 whose JSON says null (app/model_server/batching.py).

Why three canary artifacts: each fault shows on exactly one of the canary checks (5xx ratio, refusal
increase, p99 latency), so each check is proved to catch its fault and to ignore the others.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures

CENTIMETRES_PER_METRE = 100
# Trees the slow forest is grown with before they are repeated (see slow_model).
GROWN_TREES = 100


def _write(model: Any, directory: Path, name: str) -> tuple[Path, str]:
    path = directory / name
    joblib.dump(model, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def overflowing_model(directory: Path, name: str = "overflowing.pkl") -> tuple[Path, str]:
    """5xx on most iris rows (those with a degree-4 term of their centimetres above 709)."""
    features, labels = load_iris(return_X_y=True)
    model = make_pipeline(PolynomialFeatures(degree=4), FunctionTransformer(np.vectorize(math.exp)),
                          LogisticRegression(max_iter=1000))
    return _write(model.fit(features / CENTIMETRES_PER_METRE, labels), directory, name)


def out_of_domain_model(directory: Path, name: str = "out_of_domain.pkl") -> tuple[Path, str]:
    """4xx on every iris row: asin is defined on [-1, 1] and every measurement in cm is above 1."""
    features, labels = load_iris(return_X_y=True)
    model = make_pipeline(FunctionTransformer(np.sqrt), FunctionTransformer(np.vectorize(math.asin)),
                          LogisticRegression(max_iter=1000))
    return _write(model.fit(features / features.max(axis=0), labels), directory, name)


def _predict_seconds(model: RandomForestClassifier, row: np.ndarray) -> float:
    """What the server spends on one row: it asks for both outputs (predict and predict_proba)."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        model.predict_proba(row)
        model.predict(row)
        timings.append(time.perf_counter() - started)
    return sorted(timings)[1]


def slow_model(directory: Path, at_least_s: float, name: str = "slow.pkl") -> tuple[Path, str]:
    """A forest whose every predict call takes at least `at_least_s` on this machine.

    Its cost is per tree, so the trees grown are repeated until timing says a call takes long
    enough: predicting with thousands of trees costs the same whether they are distinct or the same
    hundred repeated, and growing thousands would take most of a test's time. One job: the forest keeps to one
    CPU, as a pod's CPU limit would, and leaves the rest to the other servers."""
    features, labels = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=GROWN_TREES, random_state=0).fit(features, labels)
    per_tree_s = _predict_seconds(forest, features[:1]) / GROWN_TREES
    copies = math.ceil(at_least_s / (per_tree_s * GROWN_TREES))
    forest.estimators_ = forest.estimators_ * copies
    forest.n_estimators = len(forest.estimators_)
    return _write(forest, directory, name)


def log_regressor(directory: Path, name: str = "log_regressor.pkl") -> tuple[Path, str]:
    """A scikit-learn regressor of log(1 + measurement): NaN for a measurement below -1 (and finite at 0,
    where the server's load-time probe predicts)."""
    features, labels = load_iris(return_X_y=True)
    model = make_pipeline(FunctionTransformer(np.log1p), LinearRegression())
    return _write(model.fit(features, labels.astype(float)), directory, name)


def log_graph(directory: Path, name: str = "log.onnx") -> tuple[Path, str]:
    """An ONNX graph of one core operator, y = log(x) on FP32 [N, 4]: NaN for a negative value."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "log",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what the pinned onnxruntime reads
    path = directory / name
    path.write_bytes(model.SerializeToString())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# -- valid traffic: iris rows, one per request -----------------------------------------------------

def iris_documents() -> list[bytes]:
    """Every iris row as a V2 infer request body: valid input a client would send."""
    return [json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": row.tolist()}]}).encode()
            for row in load_iris().data]


class Traffic(AbstractContextManager["Traffic"]):
    """`clients` threads per server, each sending the iris rows in turn over one keep-alive
    connection until the block ends. Servers are grouped by name (a revision's pods): the answers
    are counted by name and status, with the moment each name first answered each status."""

    def __init__(self, ports: Mapping[str, Sequence[int]], clients: int = 2) -> None:
        self.answers: dict[str, Counter[int]] = {name: Counter() for name in ports}
        self.first_answered: dict[tuple[str, int], float] = {}  # (name, status) → time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        documents = iris_documents()
        # Each client starts at its own row, so a server sees a mix of rows at any moment.
        self._threads = [threading.Thread(target=self._client, daemon=True,
                                          args=(name, port, documents, client * len(documents) // clients))
                         for name, group in ports.items() for port in group for client in range(clients)]
        for thread in self._threads:
            thread.start()

    def _client(self, server: str, port: int, documents: list[bytes], offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for document in self._rows(documents, offset):
            try:
                connection.request("POST", "/v2/models/iris/infer", document, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                connection.close()  # reconnects on the next request; a lost request is not an answer
                continue
            with self._lock:
                self.answers[server][response.status] += 1
                self.first_answered.setdefault((server, response.status), time.monotonic())
        connection.close()

    def _rows(self, documents: list[bytes], offset: int) -> Iterator[bytes]:
        index = offset
        while not self._stop.is_set():
            yield documents[index % len(documents)]
            index += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
