"""A model whose prediction is NaN or infinite answers 500 naming the output, for every runtime
(the check is the batcher's, below every runtime), over real HTTP: a 200 would carry nulls in JSON.
A neighbour in the same batch still gets its own, finite, answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faulty_models import log_graph, log_regressor
from tests.support.server import Server, start_server

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
NEGATIVE_ROW = [-5.1, 3.5, 1.4, 0.2]
# (artifact, the wire datatype its input takes, the output whose values go NaN)
FAULTY = {"sklearn": (log_regressor, "FP64", "predict"), "onnx": (log_graph, "FP32", "y")}


def infer(server: Server, rows: list[list[float]], datatype: str) -> tuple[int, dict[str, object]]:
    document = {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": datatype,
                            "data": [value for row in rows for value in row]}]}
    response = server.request("POST", "/v2/models/model/infer", document)
    return response.status, response.json()


@pytest.fixture(params=sorted(FAULTY))
def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    build, datatype, output = FAULTY[request.param]
    artifact: Callable[[Path], tuple[Path, str]] = build
    path, sha256 = artifact(tmp_path)
    # A batch window long enough that the two concurrent requests below share one predict call.
    server = start_server(tmp_path, path, sha256, MODEL_NAME="model", MODEL_WORKERS="1",
                          MODEL_MAX_BATCH_WAIT_MS="50")
    yield server, datatype, output
    server.stop()


def test_a_nan_prediction_is_a_500_naming_the_output_and_the_model(faulty: tuple[Server, str, str]) -> None:
    server, datatype, output = faulty
    status, body = infer(server, [NEGATIVE_ROW], datatype)
    assert status == 500, body
    assert body == {"error": f"model 'model' predicted NaN or infinite values in output '{output}': a fault of the "
                             "model on these inputs, not of the request"}
    assert infer(server, [IRIS_ROW], datatype)[0] == 200


def test_only_the_request_whose_rows_went_nan_fails_in_a_shared_batch(faulty: tuple[Server, str, str]) -> None:
    server, datatype, _ = faulty
    answers: dict[str, tuple[int, dict[str, object]]] = {}

    def send(key: str, rows: list[list[float]]) -> None:
        answers[key] = infer(server, rows, datatype)

    threads = [threading.Thread(target=send, args=item) for item in (("bad", [NEGATIVE_ROW]), ("good", [IRIS_ROW]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["bad"][0] == 500
    status, body = answers["good"]
    assert status == 200, body
    assert "null" not in json.dumps(body)
