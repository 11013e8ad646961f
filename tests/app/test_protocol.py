"""The V2 and V1 codecs in process: bytes in, rows or a 400 naming the field out; results in, bytes
out. The real-socket tests cover the same through the server; these pin every rule down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from model_server import protocol
from model_server.errors import BadRequest
from model_server.model import Model
from model_server.runtimes.base import LoadOptions
from model_server.runtimes.sklearn import SklearnRuntime


@pytest.fixture(scope="module")
def estimator() -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*load_iris(return_X_y=True))


@pytest.fixture
def model(estimator: LogisticRegression) -> Model:
    runtime = SklearnRuntime(estimator, LoadOptions(path=Path("iris.pkl"), device="cpu", threads=1))
    return Model(name="iris", version="1", sha256="0" * 64, runtime=runtime, load_seconds=0.0, max_batch_size=1024,
                 max_batch_wait_s=0.0, threads=1)


def rows(decoded: protocol.InferRequest) -> np.ndarray:
    return decoded.inputs["input-0"]


def v2(*, data: Any = None, shape: Any = None, datatype: str = "FP64", **extra: Any) -> bytes:
    tensor = {"name": "x", "shape": [1, 4] if shape is None else shape, "datatype": datatype,
              "data": [5.1, 3.5, 1.4, 0.2] if data is None else data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def refused(model: Model, body: bytes, header: int | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        protocol.decode_v2(model, body, header)
    return caught.value.message


def test_flat_and_nested_json_decode_to_float_rows(model: Model) -> None:
    flat = protocol.decode_v2(model, v2(), None)
    nested = protocol.decode_v2(model, v2(data=[[5.1, 3.5, 1.4, 0.2]]), None)
    assert rows(flat).dtype == np.float64 and rows(flat).tolist() == rows(nested).tolist() == [[5.1, 3.5, 1.4, 0.2]]
    assert flat.outputs == {"predict": False, "predict_proba": False} and flat.id is None


def test_a_one_dimensional_shape_is_one_row(model: Model) -> None:
    assert rows(protocol.decode_v2(model, v2(shape=[4]), None)).shape == (1, 4)


@pytest.mark.parametrize(("datatype", "inside", "outside"), [
    ("UINT8", 255, 256), ("INT8", 127, 128), ("INT8", -128, -129), ("UINT8", 0, -1), ("INT16", 32767, 32768)])
def test_integer_datatypes_take_exactly_their_range(model: Model, datatype: str, inside: int, outside: int) -> None:
    assert rows(protocol.decode_v2(model, v2(data=[inside, 1, 2, 3], datatype=datatype), None))[0, 0] == inside
    assert f"values outside the range of {datatype}" in refused(model, v2(data=[outside, 1, 2, 3], datatype=datatype))


@pytest.mark.parametrize(("data", "datatype", "message"), [
    ([1.5, 1, 2, 3], "INT32", "datatype INT32 cannot hold fractional numbers"),
    ([True, False, True, False], "FP64", "datatype FP64 cannot hold booleans"),
    ([1, 2, 3, 4], "BOOL", "datatype BOOL cannot hold integers"),
    (["a", "b", "c", "d"], "FP64", "found strings, nulls or nested objects"),
    ([1, None, 2, 3], "FP64", "found strings, nulls or nested objects"),
    ([[1, 2], [3]], "FP64", "rows have different lengths"),
    ("1,2,3,4", "FP64", "expected a list of numbers"),
])
def test_data_that_does_not_fit_its_datatype_names_the_field(model: Model, data: Any, datatype: str,
                                                            message: str) -> None:
    assert message in refused(model, v2(data=data, datatype=datatype))


def test_nesting_that_disagrees_with_the_declared_shape_is_refused(model: Model) -> None:
    message = refused(model, v2(data=[[1, 2], [3, 4]], shape=[1, 4]))
    assert message == "inputs[0]: nested data has shape [2, 2], but shape says [1, 4]"


@pytest.mark.parametrize(("shape", "message"), [
    ([1, 3], "model 'iris' takes [rows, 4] (4 features per row), got [1, 3]"),
    ([0, 4], "the tensor has no rows"),
    ([1.5, 4], "expected a list of non-negative integers"),
    ([True, 4], "expected a list of non-negative integers"),
    ([-1, 4], "expected a list of non-negative integers"),
    ("1,4", "expected a list of non-negative integers"),
    ([1, 2, 2], "model 'iris' takes [rows, 4]"),
])
def test_shapes_the_model_cannot_take(model: Model, shape: Any, message: str) -> None:
    assert message in refused(model, v2(shape=shape))


def test_values_count_must_match_the_shape(model: Model) -> None:
    assert refused(model, v2(shape=[2, 4])) == "inputs[0]: shape [2, 4] needs 8 values, data has 4"


def binary_body(values: np.ndarray, size: Any = None, **extra: Any) -> tuple[bytes, int]:
    raw = values.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {
        "binary_data_size": len(raw) if size is None else size}}], **extra}).encode()
    return header + raw, len(header)


def test_the_binary_tensor_extension_decodes(model: Model) -> None:
    body, header = binary_body(np.array([5.1, 3.5, 1.4, 0.2]))
    assert rows(protocol.decode_v2(model, body, header))[0].tolist() == pytest.approx([5.1, 3.5, 1.4, 0.2])


@pytest.mark.parametrize("size", [1.5, "16", True, -1])
def test_a_binary_size_that_is_not_a_byte_count_is_refused(model: Model, size: Any) -> None:
    body, header = binary_body(np.array([5.1, 3.5, 1.4, 0.2]), size=size)
    assert "binary_data_size: expected a non-negative integer" in refused(model, body, header)


def test_a_binary_size_that_disagrees_with_the_body_is_refused(model: Model) -> None:
    body, header = binary_body(np.array([5.1, 3.5, 1.4, 0.2]), size=12)
    assert "says 12 bytes, the body carries 16 after the JSON header" in refused(model, body, header)


@pytest.mark.parametrize("header", [0, 10_000])
def test_a_header_length_outside_the_body_is_refused(model: Model, header: int) -> None:
    assert "is not within the" in refused(model, v2(), header)


def test_output_selection_and_per_output_binary(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(outputs=[{"name": "predict_proba", "parameters": {"binary_data": True}},
                                                    {"name": "predict"}]), None)
    assert decoded.outputs == {"predict_proba": True, "predict": False}
    results = model.predict(decoded.inputs, frozenset(decoded.outputs))
    body, header = protocol.encode_v2(model, decoded, results)
    assert header is not None
    document = orjson.loads(body[:header])
    proba, predict = document["outputs"]
    assert proba["parameters"] == {"binary_data_size": 24} and "data" not in proba
    assert np.frombuffer(body[header:], "<f8").tolist() == pytest.approx(results["predict_proba"].ravel().tolist())
    assert predict["data"] == results["predict"].tolist()


@pytest.mark.parametrize(("outputs", "message"), [
    ([], "outputs: expected a non-empty list"),
    ([{"name": "nope"}], "outputs[0].name: model 'iris' has outputs predict, predict_proba, got 'nope'"),
    ([{"name": "predict"}, {"name": "predict"}], "outputs[1].name: 'predict' is requested twice"),
    ([{"name": "predict", "parameters": ["binary_data"]}], "outputs[0].parameters: expected an object, got list"),
])
def test_bad_output_requests(model: Model, outputs: Any, message: str) -> None:
    assert message in refused(model, v2(outputs=outputs))


def test_binary_output_by_default_for_the_whole_request(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(parameters={"binary_data_output": True}), None)
    assert decoded.outputs == {"predict": True, "predict_proba": True}


def test_the_id_is_echoed_and_must_be_a_string(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(id="abc"), None)
    body, _ = protocol.encode_v2(model, decoded, model.predict(decoded.inputs, frozenset(decoded.outputs)))
    assert orjson.loads(body)["id"] == "abc"
    assert refused(model, v2(id=7)) == "id: expected a string"


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "request body is not valid JSON"),
    (b"[]", "request body: expected a JSON object with 'inputs'"),
    (b"{}", "request.inputs: expected list, got missing"),
    (b'{"inputs": [1, 2]}', "inputs: model 'iris' takes 1 input tensor of shape [-1, 4], got 2"),
    (b'{"inputs": [7]}', "inputs[0]: expected an object with name, shape, datatype and data"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": [1, 2, 3, 4]}]}',
     "inputs[0].datatype: model 'iris' takes numbers"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}', "inputs[0].data: missing"),
])
def test_malformed_documents_name_what_is_wrong(model: Model, body: bytes, message: str) -> None:
    assert message in refused(model, body)


def test_v1_instances_decode_and_encode(model: Model) -> None:
    inputs = protocol.decode_v1(model, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
    assert inputs["input-0"].shape == (2, 4)
    assert orjson.loads(protocol.encode_v1(model.predict(inputs, frozenset({"predict"}))["predict"])) == {
        "predictions": [0, 2]}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": []}', "instances: the list is empty"),
    (b'{"inputs": []}', "instances: expected"),
    (b'{"instances": [[1, 2, 3]]}', "takes rows of 4 numbers, got an array of shape [1, 3]"),
    (b'{"instances": [1, 2, 3, 4]}', "got an array of shape [4]"),
])
def test_v1_refusals(model: Model, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        protocol.decode_v1(model, body)


def test_string_class_labels_are_encoded_as_strings() -> None:
    labels = np.array(["setosa", "virginica"], dtype=object)
    assert orjson.loads(protocol.encode_v1(labels)) == {"predictions": ["setosa", "virginica"]}
    assert protocol.jsonable(np.array(["a", "b"])) == ["a", "b"]


# -- what mutation testing found untested -------------------------------------------------------------

def test_the_v2_response_document_is_exactly_the_protocols(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(id="r1", outputs=[{"name": "predict"}, {"name": "predict_proba"}]), None)
    results = {"predict": np.array([0]), "predict_proba": np.array([[0.5, 0.25, 0.25]])}
    body, header = protocol.encode_v2(model, decoded, results)
    assert header is None
    assert orjson.loads(body) == {
        "model_name": "iris", "model_version": "1", "id": "r1",
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]},
                    {"name": "predict_proba", "datatype": "FP64", "shape": [1, 3], "data": [0.5, 0.25, 0.25]}]}


def test_string_labels_asked_for_as_binary_still_go_as_json(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(outputs=[{"name": "predict", "parameters": {"binary_data": True}}]), None)
    body, header = protocol.encode_v2(model, decoded, {"predict": np.array(["setosa"], dtype=object)})
    assert header is None  # BYTES has no fixed-width binary form
    assert orjson.loads(body)["outputs"] == [{"name": "predict", "datatype": "BYTES", "shape": [1],
                                              "data": ["setosa"]}]


def test_labels_keep_numbers_as_numbers() -> None:
    assert protocol.jsonable(np.array([1, 2.5, True, "a"], dtype=object)) == [1, 2.5, True, "a"]


def test_an_output_that_inherits_the_requests_binary_default(model: Model) -> None:
    decoded = protocol.decode_v2(model, v2(parameters={"binary_data_output": True},
                                           outputs=[{"name": "predict", "parameters": {}}]), None)
    assert decoded.outputs == {"predict": True}


def test_non_object_parameters_and_outputs_are_client_errors(model: Model) -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4],
                                   "parameters": "binary"}]}).encode()
    assert rows(protocol.decode_v2(model, body, None)).shape == (1, 4)  # not an object: no binary parameters
    assert refused(model, v2(outputs=["predict"])) == (
        "outputs[0].name: model 'iris' has outputs predict, predict_proba, got None")


@pytest.mark.parametrize(("body", "message"), [
    (b'{"inputs": "x"}', "request.inputs: expected list, got str"),
    (b'{"inputs": [{"shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}',
     "inputs[0].name: expected str, got missing"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": 64, "data": [1, 2, 3, 4]}]}',
     "inputs[0].datatype: expected str, got int"),
    (b'[1]', "request body: expected a JSON object with 'inputs'"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "STRING", "data": [1, 2, 3, 4]}]}',
     "inputs[0].datatype: model 'iris' takes numbers (BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, "
     "UINT64, FP16, FP32, FP64), got 'STRING'"),
    (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, Infinity]}]}',
     "request body is not valid JSON"),
])
def test_refusals_name_the_field_exactly(model: Model, body: bytes, message: str) -> None:
    assert refused(model, body).startswith(message)


def test_a_json_header_filling_the_whole_body_is_accepted(model: Model) -> None:
    body = v2()
    assert rows(protocol.decode_v2(model, body, len(body))).shape == (1, 4)


def test_a_binary_chunk_of_the_wrong_size_says_how_many_bytes_it_needs(model: Model) -> None:
    raw = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    assert refused(model, header + raw, len(header)) == (
        "inputs[0].parameters.binary_data_size: 12 bytes cannot hold 4 FP32 values (16 bytes)")


def test_values_the_model_cannot_take_name_the_field_they_came_in(model: Model) -> None:
    binary = np.array([np.inf, 1, 2, 3], dtype="<f8").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": len(binary)}}]}).encode()
    assert refused(model, header + binary, len(header)).startswith("inputs[0].data: ")


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": []}', "instances: the list is empty"),
    (b'{"inputs": []}', 'instances: expected {"instances": [[feature, ...], ...]}'),
    (b'{"instances": [[1, 2, 3]]}', "instances: model 'iris' takes rows of 4 numbers, got an array of shape [1, 3]"),
    (b'{"instances": [["a", "b", "c", "d"]]}', "instances.data: expected only FP64 numbers"),
])
def test_v1_refusals_exactly(model: Model, body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        protocol.decode_v1(model, body)
    assert caught.value.message.startswith(message)


def test_v1_rows_are_float64(model: Model) -> None:
    assert protocol.decode_v1(model, b'{"instances": [[5, 3, 1, 0]]}')["input-0"].dtype == np.float64


@pytest.mark.parametrize(("body", "header", "message"), [
    (v2(shape=[1, 5]), None, "inputs[0].shape: model 'iris' takes [rows, 4] (4 features per row), got [1, 5]"),
    (v2(data=[True, False, True, True]), None, "inputs[0].data: datatype FP64 cannot hold booleans"),
    (v2() + b"\x00\x00", len(v2()), "body: 2 bytes of binary data, but no input declares binary_data_size"),
    (v2(outputs=[]), None, 'outputs: expected a non-empty list of {"name": ...} objects'),
])
def test_refusals_read_exactly(model: Model, body: bytes, header: int | None, message: str) -> None:
    assert refused(model, body, header) == message
