"""Every endpoint over real HTTP against a running server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.server import Server, start_server

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def tensor(data: Any, shape: list[int] | None = None, datatype: str = "FP64", name: str = "input-0") -> dict[str, Any]:
    return {"name": name, "shape": shape if shape is not None else list(np.shape(data)), "datatype": datatype,
            "data": data}


def test_health(server: Server) -> None:
    assert server.request("GET", "/v2/health/live").json() == {"live": True}
    assert server.request("GET", "/v2/health/ready").json() == {"ready": True}


def test_server_metadata_advertises_the_binary_extension(server: Server) -> None:
    metadata = server.request("GET", "/v2").json()
    assert metadata["name"] == "model-server"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/1"])
def test_model_metadata(server: Server, path: str) -> None:
    metadata = server.request("GET", path).json()
    assert metadata["name"] == "iris" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert {o["name"]: o for o in metadata["outputs"]} == {
        "predict": {"name": "predict", "datatype": "INT64", "shape": [-1]},
        "predict_proba": {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    }


@pytest.mark.parametrize("path", ["/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"])
def test_model_ready(server: Server, path: str) -> None:
    assert server.request("GET", path).json() == {"ready": True}


def test_infer_nested_json_matches_the_model(server: Server, model: Any) -> None:
    response = server.infer({"id": "req-1", "inputs": [tensor(ROWS)]})
    assert response.status == 200
    body = response.json()
    assert body["id"] == "req-1"
    assert (body["model_name"], body["model_version"]) == ("iris", "1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["data"] == model.predict(np.array(ROWS)).tolist()
    assert outputs["predict"]["shape"] == [3]
    assert outputs["predict_proba"]["shape"] == [3, 3]
    np.testing.assert_allclose(outputs["predict_proba"]["data"], model.predict_proba(np.array(ROWS)).ravel())


def test_infer_flat_data_with_shape(server: Server, model: Any) -> None:
    flat = [value for row in ROWS for value in row]
    body = server.infer({"inputs": [tensor(flat, [3, 4])]}).json()
    assert "id" not in body
    assert body["outputs"][0]["data"] == model.predict(np.array(ROWS)).tolist()


def test_infer_single_row_shape(server: Server, model: Any) -> None:
    body = server.infer({"inputs": [tensor(ROWS[1], [4])]}).json()
    assert body["outputs"][0]["data"] == model.predict(np.array(ROWS[1:2])).tolist()


@pytest.mark.parametrize("datatype", ["FP32", "INT32", "INT64", "UINT8"])
def test_infer_other_numeric_datatypes(server: Server, datatype: str, model: Any) -> None:
    rows = [[5, 3, 1, 0], [7, 3, 5, 2]]
    response = server.infer({"inputs": [tensor(rows, datatype=datatype)]})
    assert response.status == 200, response.body
    assert response.json()["outputs"][0]["data"] == model.predict(np.array(rows, dtype=float)).tolist()


def test_fp16_travels_only_as_binary_and_bf16_not_at_all(server: Server, model: Any) -> None:
    """As KServe: JSON numbers are not half-precision values. numpy has no bfloat16."""
    rows = np.array([[5, 3, 1, 0], [7, 3, 5, 2]], dtype="<f2")
    assert error_of(server.infer({"inputs": [tensor(rows.tolist(), datatype="FP16")]}), 400) == (
        "inputs[0].data: FP16 is taken only as binary data (parameters.binary_data_size), as KServe takes it")
    header = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP16",
                                     "parameters": {"binary_data_size": rows.nbytes}}]}).encode()
    response = server.request("POST", "/v2/models/iris/infer", header + rows.tobytes(),
                              {"Inference-Header-Content-Length": str(len(header))})
    assert response.json()["outputs"][0]["data"] == model.predict(rows.astype(float)).tolist()
    assert error_of(server.infer({"inputs": [tensor(rows.tolist(), datatype="BF16")]}), 400) == (
        "inputs[0].datatype: BF16 is not taken (numpy has no bfloat16 type); send FP32, or FP16 as binary data")


def test_outputs_selection(server: Server) -> None:
    body = server.infer({"inputs": [tensor(ROWS)], "outputs": [{"name": "predict_proba"}]}).json()
    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]


def test_v1_predict(server: Server, model: Any) -> None:
    response = server.request("POST", "/v1/models/iris:predict", {"instances": ROWS})
    assert response.json() == {"predictions": model.predict(np.array(ROWS)).tolist()}


def test_v1_model_status(server: Server) -> None:
    assert server.request("GET", "/v1/models/iris").json() == {"name": "iris", "ready": True}


def binary_request(rows: np.ndarray, datatype: str = "FP32", outputs: list[dict[str, Any]] | None = None,
                   binary_output: bool = True) -> tuple[bytes, dict[str, str]]:
    raw = rows.astype({"FP32": "<f4", "FP64": "<f8"}[datatype]).tobytes()
    header: dict[str, Any] = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": datatype,
                                          "parameters": {"binary_data_size": len(raw)}}]}
    if outputs is not None:
        header["outputs"] = outputs
    elif binary_output:
        header["parameters"] = {"binary_data_output": True}
    encoded = json.dumps(header).encode()
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded)),
                           "Content-Type": "application/octet-stream"}


def split_binary(response_body: bytes, header_length: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    header = json.loads(response_body[:header_length])
    buffers, offset = {}, header_length
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            buffers[output["name"]] = response_body[offset:offset + size]
            offset += size
    assert offset == len(response_body)
    return header, buffers


def test_binary_tensor_extension_in_and_out(server: Server, model: Any) -> None:
    rows = np.array(ROWS)
    body, headers = binary_request(rows)
    response = server.request("POST", "/v2/models/iris/infer", body, headers)
    assert response.status == 200, response.body
    _, buffers = split_binary(response.body, int(response.headers["inference-header-content-length"]))
    predicted = np.frombuffer(buffers["predict"], dtype="<i8")
    probabilities = np.frombuffer(buffers["predict_proba"], dtype="<f8").reshape(3, 3)
    expected = model.predict(rows.astype(np.float32).astype(np.float64))
    assert predicted.tolist() == expected.tolist()
    np.testing.assert_allclose(probabilities, model.predict_proba(rows.astype(np.float32).astype(np.float64)))


def test_binary_input_with_json_output_per_output(server: Server) -> None:
    body, headers = binary_request(np.array(ROWS), "FP64",
                                   outputs=[{"name": "predict", "parameters": {"binary_data": False}}])
    response = server.request("POST", "/v2/models/iris/infer", body, headers)
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["data"] == [0, 2, 1]


# -- errors: always {"error": ...}, never a 5xx for a client's mistake ----------------------------------


def error_of(response: Any, status: int) -> str:
    assert response.status == status, (response.status, response.body)
    body = response.json()
    assert set(body) == {"error"}
    return str(body["error"])


@pytest.mark.parametrize(("document", "fragment"), [
    ({"inputs": [tensor([[1, 2, 3]])]}, "inputs[0].shape: model 'iris' takes [rows, 4]"),
    ({"inputs": [tensor([1, 2, 3, 4, 5, 6, 7], [2, 4])]}, "shape [2, 4] needs 8 values, data has 7"),
    ({"inputs": [tensor([[1, 2, 3, 4], [1, 2, 3]], [2, 4])]}, "inputs[0].data: rows have different lengths"),
    ({"inputs": [tensor([["a", "b", "c", "d"]], datatype="FP32")]}, "expected only FP32 numbers"),
    ({"inputs": [tensor([[1.5, 2, 3, 4]], datatype="INT32")]}, "datatype INT32 cannot hold fractional numbers"),
    ({"inputs": [tensor([[300, 2, 3, 4]], datatype="INT8")]}, "values outside the range of INT8"),
    ({"inputs": [tensor([[1, None, 3, 4]])]}, "found strings, nulls or nested objects"),
    ({"inputs": [tensor([["a", "b", "c", "d"]], datatype="BYTES")]}, "inputs[0].datatype: model 'iris' takes numbers"),
    ({"inputs": [tensor([], [0, 4])]}, "inputs[0].shape: the tensor has no rows"),
    ({"inputs": []}, "inputs: model 'iris' takes 1 input tensor of shape [-1, 4], got 0"),
    ({"inputs": [tensor([ROWS[0]]), tensor([ROWS[0]])]}, "takes 1 input tensor"),
    ({"input": [tensor([ROWS[0]])]}, "request.inputs: expected list, got missing"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}, "inputs[0].data: missing"),
    ({"inputs": [{"name": "x", "datatype": "FP64", "data": ROWS[0]}]}, "inputs[0].shape: expected a list"),
    ({"inputs": [tensor([ROWS[0]])], "outputs": [{"name": "decision"}]}, "outputs[0].name: model 'iris' has outputs"),
    ({"inputs": [tensor([ROWS[0]])], "id": 5}, "id: expected a string"),
])
def test_bad_inputs_are_400_naming_the_field(server: Server, document: dict[str, Any], fragment: str) -> None:
    assert fragment in error_of(server.infer(document), 400)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b"", b"\xff\xfe", b'{"inputs": [1e999]}'])
def test_malformed_bodies_are_400(server: Server, body: bytes) -> None:
    error_of(server.request("POST", "/v2/models/iris/infer", body), 400)


def test_non_finite_values_are_400_when_the_model_cannot_take_them(server: Server) -> None:
    rows = np.array([[np.nan, 1, 2, 3]])
    body, headers = binary_request(rows, "FP64")
    assert "NaN or infinite values" in error_of(server.request("POST", "/v2/models/iris/infer", body, headers), 400)


def test_binary_size_mismatch_is_400(server: Server) -> None:
    body, headers = binary_request(np.array(ROWS))
    assert "binary_data_size" in error_of(
        server.request("POST", "/v2/models/iris/infer", body[:-4], headers), 400)


def test_bad_binary_header_length_is_400(server: Server) -> None:
    body, headers = binary_request(np.array(ROWS))
    headers["Inference-Header-Content-Length"] = str(len(body) + 10)
    assert "Inference-Header-Content-Length" in error_of(
        server.request("POST", "/v2/models/iris/infer", body, headers), 400)


def test_v1_errors(server: Server) -> None:
    assert "instances" in error_of(server.request("POST", "/v1/models/iris:predict", {"rows": ROWS}), 400)
    assert "rows of 4 numbers" in error_of(
        server.request("POST", "/v1/models/iris:predict", {"instances": [[1, 2]]}), 400)


@pytest.mark.parametrize(("path", "fragment"), [
    ("/v2/models/nope/infer", "model 'nope' is not served here; this server serves 'iris'"),
    ("/v2/models/iris/versions/7/infer", "model 'iris' has no version '7'; it serves version '1'"),
    ("/v1/models/nope:predict", "model 'nope' is not served here"),
    ("/v3/anything", "no endpoint at /v3/anything"),
])
def test_unknown_model_version_or_path_is_404(server: Server, path: str, fragment: str) -> None:
    assert fragment in error_of(server.request("POST", path, {"inputs": [tensor([ROWS[0]])]}), 404)


def test_wrong_method_is_405_with_allow(server: Server) -> None:
    response = server.request("GET", "/v2/models/iris/infer")
    assert "use POST" in error_of(response, 405)
    assert response.headers["allow"] == "POST"
    response = server.request("DELETE", "/v2/health/ready")
    assert "use GET or HEAD" in error_of(response, 405)
    assert response.headers["allow"] == "GET, HEAD"
    response = server.request("HEAD", "/v2/models/iris/infer")
    assert (response.status, response.headers["allow"], response.body) == (405, "POST", b"")


# -- HEAD: every GET route answers it, with the GET's status and headers and no body --------------------

GET_PATHS = ["/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/iris", "/v2/models/iris/versions/1",
             "/v2/models/iris/ready", "/v1/models/iris", "/metrics"]


def exchange(server: Server, stream: bytes, answers: int) -> bytes:
    """Send `stream` on one connection and read until `answers` complete answers have arrived."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(stream)
        received = b""
        while True:
            heads = received.split(b"\r\n\r\n")
            if len(heads) > answers and received.endswith(b"}"):
                return received
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk


@pytest.mark.parametrize("path", GET_PATHS)
def test_a_get_route_answers_head_with_the_gets_headers_and_no_body(server: Server, path: str) -> None:
    got = server.request("GET", path)
    head = server.request("HEAD", path)
    assert head.status == got.status == 200 and head.body == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the metrics body changes from one request to the next
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.body))
    # On the wire: the HEAD's answer ends with its header section, and the connection stays in step
    # for the request after it (a body sent for HEAD would be read as the next answer).
    stream = exchange(server, b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", answers=2)
    head_section, after = stream.split(b"\r\n\r\n", 1)
    assert head_section.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head_section
    assert after.startswith(b"HTTP/1.1 200 OK\r\n") and after.endswith(b'\r\n\r\n{"live":true}')


def test_head_keeps_the_connection_for_the_next_request(server: Server) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("HEAD", "/v2/models/iris")
        first = connection.getresponse()
        assert (first.status, first.read()) == (200, b"") and not first.will_close
        connection.request("GET", "/v2/models/iris")
        second = connection.getresponse()
        assert second.status == 200 and json.loads(second.read())["name"] == "iris"
        assert int(first.headers["content-length"]) == int(second.headers["content-length"])
    finally:
        connection.close()


def test_unsupported_media_type_is_415(server: Server) -> None:
    response = server.request("POST", "/v2/models/iris/infer", {"inputs": [tensor([ROWS[0]])]},
                              {"Content-Type": "text/html"})
    assert "Content-Type text/html is not accepted" in error_of(response, 415)
    response = server.request("POST", "/v2/models/iris/infer", b"...", {"Content-Encoding": "gzip"})
    assert "Content-Encoding gzip" in error_of(response, 415)


def test_curl_default_content_type_is_accepted(server: Server) -> None:
    response = server.request("POST", "/v2/models/iris/infer", {"inputs": [tensor([ROWS[0]])]},
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200


def test_metrics_count_errors_queue_wait_and_batches(server: Server) -> None:
    server.infer({"inputs": [tensor([[1, 2, 3]])]})
    server.infer({"inputs": [tensor(ROWS)]})
    text = server.request("GET", "/metrics").body.decode()
    assert 'model_server_requests_total{endpoint="infer",status="400"}' in text
    assert 'model_server_requests_total{endpoint="infer",status="200"}' in text
    for name in ("model_server_request_duration_seconds_bucket", "model_server_queue_wait_seconds_count",
                 "model_server_batch_rows_bucket", "model_server_inflight_requests",
                 "model_server_model_load_seconds"):
        assert name in text, name
    # prometheus_client's multiprocess mode sorts the labels by name.
    assert 'model_server_model_info{device="cpu",name="iris",runtime="sklearn",sha256="' in text
    assert 'version="1"} 1.0' in text


def test_access_log_has_one_json_line_per_request_without_payloads(server: Server) -> None:
    marker = "/v2/models/iris/versions/1/ready"
    server.request("GET", marker)
    server.infer({"id": "secret-payload-marker", "inputs": [tensor([[4.44, 3.33, 2.22, 1.11]])]})
    # Each worker writes its lines once per event-loop pass, right after the response: poll for them.
    deadline = time.monotonic() + 5
    entries: list[dict[str, Any]] = []
    while not entries and time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        entries = [e for e in lines if e.get("path") == marker]
        time.sleep(0.01)
    assert entries and entries[-1]["status"] == 200 and "ms" in entries[-1]
    assert "4.44" not in server.log() and "secret-payload-marker" not in server.log()


def test_prediction_log_records_inputs_and_outputs(server: Server) -> None:
    server.infer({"id": "logged", "inputs": [tensor([[6.1, 2.8, 4.7, 1.2]])]})
    directory = server.log_path.parent
    deadline = time.monotonic() + 5
    logged: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not logged:
        lines = [json.loads(line) for path in directory.glob("predictions-*.jsonl")
                 for line in path.read_text().splitlines()]
        logged = [line for line in lines if line["id"] == "logged"]
        time.sleep(0.1)
    assert logged, "the prediction log is flushed every second"
    assert logged[0]["inputs"] == [[6.1, 2.8, 4.7, 1.2]]
    assert set(logged[0]["outputs"]) == {"predict", "predict_proba"}
    assert logged[0]["model"] == "iris" and logged[0]["version"] == "1"


def test_keep_alive_and_pipelining_answer_in_order(server: Server) -> None:
    import socket

    requests = b""
    for index in range(5):
        body = json.dumps({"id": f"p{index}", "inputs": [tensor([ROWS[index % 3]])]}).encode()
        requests += (b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(requests)
        received = b""
        while received.count(b"HTTP/1.1 200") < 5 or not received.endswith(b"}"):
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
    ids = [json.loads(part[part.index(b"{"):])["id"] for part in received.split(b"HTTP/1.1 200 OK")[1:]]
    assert ids == [f"p{i}" for i in range(5)]


def test_every_worker_is_ready_from_its_first_connection(tmp_path: Path) -> None:
    """Readiness must never flicker: each new connection may land on any worker."""
    fresh = start_server(tmp_path, MODEL_WORKERS="2", wait=False)
    try:
        statuses = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(statuses) < 200:
            try:
                statuses.append(fresh.request("GET", "/v2/health/ready", timeout=2).status)
            except OSError:
                time.sleep(0.01)  # not listening yet
        assert statuses and set(statuses) == {200}, statuses
    finally:
        fresh.stop()
