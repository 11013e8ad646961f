"""Every runtime over real HTTP: XGBoost, LightGBM and ONNX (scikit-learn is the rest of tests/app).

Each model is built into the test's folder with app/train.py's own builders; the answers are
compared with the library called in-process on the same rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
import xgboost as xgb

from tests.support.runtimes import IRIS_ROWS, example, two_input_graph, write
from tests.support.server import Server, start_server

KINDS = ["xgboost", "lightgbm", "onnx", "onnx-mlp"]
TREE_KINDS = [kind for kind in KINDS if not kind.startswith("onnx")]
ONNX_KINDS = [kind for kind in KINDS if kind.startswith("onnx")]
# What each runtime says about the iris examples.
METADATA = {
    "xgboost": ("xgboost", [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
                [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                 {"name": "predict_proba", "datatype": "FP32", "shape": [-1, 3]}]),
    "lightgbm": ("lightgbm", [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
                 [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                  {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]}]),
    "onnx": ("onnxruntime_onnx", [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
             [{"name": "label", "datatype": "INT64", "shape": [-1]},
              {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]),
}
METADATA["onnx-mlp"] = METADATA["onnx"]


def expected(kind: str, path: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The library's own answer, in-process."""
    if kind == "xgboost":
        booster = xgb.Booster()
        booster.load_model(str(path))
        probabilities = booster.inplace_predict(rows.astype(np.float32))
        return {"predict": probabilities.argmax(axis=1), "predict_proba": probabilities}
    if kind == "lightgbm":
        probabilities = lgb.Booster(model_file=str(path)).predict(rows)
        return {"predict": probabilities.argmax(axis=1), "predict_proba": probabilities}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"X": rows.astype(np.float32)})
    return {"label": label, "probabilities": probabilities}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    directory = tmp_path_factory.mktemp("examples")
    built = {kind: example(directory, kind) for kind in KINDS}
    built["two-inputs"] = write(directory / "two-inputs", "model.onnx", two_input_graph())
    return built


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest, artifacts: dict[str, tuple[Path, str]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server]]:
    path, sha256 = artifacts[request.param]
    server = start_server(tmp_path_factory.mktemp(request.param), path, sha256, MODEL_WORKERS="2")
    yield request.param, server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def two_inputs(artifacts: dict[str, tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path, sha256 = artifacts["two-inputs"]
    server = start_server(tmp_path_factory.mktemp("two"), path, sha256, MODEL_WORKERS="1",
                          MODEL_MAX_BATCH_WAIT_MS="5")
    yield server
    assert server.stop() == 0


def error_of(response: Any, status: int = 400) -> str:
    assert response.status == status, (response.status, response.body)
    return str(response.json()["error"])


def input_name(kind: str) -> str:
    return str(METADATA[kind][1][0]["name"])


def test_metadata_comes_from_the_runtime(served: tuple[str, Server]) -> None:
    kind, server = served
    platform, inputs, outputs = METADATA[kind]
    assert server.request("GET", "/v2/models/iris").json() == {
        "name": "iris", "versions": ["1"], "platform": platform, "inputs": inputs, "outputs": outputs,
        "parameters": {"runtime": kind.removesuffix("-mlp"), "device": "cpu"}}


@pytest.mark.parametrize("binary", [True, False])
def test_triton_client_binary_and_json(served: tuple[str, Server], artifacts: dict[str, tuple[Path, str]],
                                       binary: bool) -> None:
    kind, server = served
    _, inputs, outputs = METADATA[kind]
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    tensor = triton.InferInput(input_name(kind), list(IRIS_ROWS.shape), inputs[0]["datatype"])
    tensor.set_data_from_numpy(IRIS_ROWS.astype(np.float32 if inputs[0]["datatype"] == "FP32" else np.float64),
                               binary_data=binary)
    requested = [triton.InferRequestedOutput(output["name"], binary_data=binary) for output in outputs]
    result = client.infer("iris", [tensor], outputs=requested)
    for name, value in expected(kind, artifacts[kind][0], IRIS_ROWS).items():
        np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-6)
        assert result.as_numpy(name).dtype == value.dtype or kind == "xgboost"  # argmax of numpy is int64


def test_v1_predictions_are_the_classes(served: tuple[str, Server], artifacts: dict[str, tuple[Path, str]]) -> None:
    kind, server = served
    response = server.request("POST", "/v1/models/iris:predict", {"instances": IRIS_ROWS.tolist()})
    classes = next(iter(expected(kind, artifacts[kind][0], IRIS_ROWS).values()))
    assert response.json() == {"predictions": classes.tolist()}


@pytest.mark.parametrize("served", TREE_KINDS, indirect=True)  # ONNX: test_onnx_takes_only_its_own_datatype
def test_every_numeric_datatype_a_tabular_runtime_takes(served: tuple[str, Server]) -> None:
    _, server = served
    rows = np.array([[5, 3, 1, 0], [7, 3, 5, 2]])
    answers = set()
    for datatype, dtype in [("INT8", "<i1"), ("UINT16", "<u2"), ("INT64", "<i8"), ("FP16", "<f2"), ("FP32", "<f4"),
                            ("FP64", "<f8")]:
        values = rows.astype(dtype)
        header = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": datatype,
                                         "parameters": {"binary_data_size": values.nbytes}}],
                             "outputs": [{"name": "predict"}]}).encode()
        binary = server.request("POST", "/v2/models/iris/infer", header + values.tobytes(),
                                {"Inference-Header-Content-Length": str(len(header))})
        assert binary.status == 200, (datatype, binary.body)
        answers.add(tuple(binary.json()["outputs"][0]["data"]))
        if datatype != "FP16":  # FP16 travels only as binary data
            document = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": datatype, "data": rows.tolist()}]}
            assert server.infer(document).status == 200, datatype
    assert len(answers) == 1


def test_bad_inputs_are_400_naming_the_field(served: tuple[str, Server]) -> None:
    kind, server = served
    name, datatype = input_name(kind), METADATA[kind][1][0]["datatype"]
    few = server.infer({"inputs": [{"name": name, "shape": [1, 3], "datatype": datatype, "data": [1, 2, 3]}]})
    if kind.startswith("onnx"):
        assert error_of(few) == ("inputs[0].shape: input 'X' of model 'iris' takes [-1, 4] (-1: any size), "
                                 "got [1, 3]")
    else:
        assert error_of(few) == "inputs[0].shape: model 'iris' takes [rows, 4] (4 features per row), got [1, 3]"
    strings = server.infer({"inputs": [{"name": name, "shape": [1, 4], "datatype": "BYTES", "data": ["a"] * 4}]})
    assert error_of(strings).startswith("inputs[0].datatype: ")
    fractional = server.infer({"inputs": [{"name": name, "shape": [1, 4], "datatype": "INT32",
                                           "data": [1.5, 2, 3, 4]}]})
    assert error_of(fractional).startswith("inputs[0].")
    outputs = server.infer({"inputs": [{"name": name, "shape": [1, 4], "datatype": datatype, "data": [1, 2, 3, 4]}],
                            "outputs": [{"name": "decision_function"}]})
    assert error_of(outputs).startswith("outputs[0].name: model 'iris' has outputs ")
    # Missing values are the trees' to handle (XGBoost and LightGBM send NaN down a learned branch);
    # the ONNX runtime lets NaN through too, and a graph that does not handle it gets a 400.
    nan_row = np.array([[np.nan, 3.0, 1.0, 0.2]], dtype="<f4" if datatype == "FP32" else "<f8")
    header = json.dumps({"inputs": [{"name": name, "shape": [1, 4], "datatype": datatype,
                                     "parameters": {"binary_data_size": nan_row.nbytes}}]}).encode()
    answer = server.request("POST", "/v2/models/iris/infer", header + nan_row.tobytes(),
                            {"Inference-Header-Content-Length": str(len(header))})
    if kind.startswith("onnx"):  # neither example graph handles missing values
        assert error_of(answer) == (f"inputs: {name} contains NaN or infinite values, and model 'iris' predicts NaN or "
                                    "infinite values for them (output 'probabilities'): it does not handle missing "
                                    "values; send finite numbers")
    else:
        assert answer.status == 200, answer.body


@pytest.mark.parametrize("served", ONNX_KINDS, indirect=True)  # a single tabular input may be called anything
def test_onnx_requests_must_name_their_inputs(served: tuple[str, Server]) -> None:
    _, server = served
    document = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    assert error_of(server.infer(document)) == "inputs[0].name: model 'iris' has no input 'input-0'; its inputs are X"


def test_concurrent_clients_each_get_their_rows(served: tuple[str, Server],
                                                artifacts: dict[str, tuple[Path, str]]) -> None:
    kind, server = served
    generator = np.random.default_rng(5)
    batches = [generator.uniform(0, 8, size=(int(generator.integers(1, 4)), 4)) for _ in range(60)]
    name, datatype = input_name(kind), METADATA[kind][1][0]["datatype"]
    output = METADATA[kind][2][1]["name"]

    def call(rows: np.ndarray) -> list[float]:
        document = {"inputs": [{"name": name, "shape": list(rows.shape), "datatype": datatype, "data": rows.tolist()}],
                    "outputs": [{"name": output}]}
        return list(server.infer(document).json()["outputs"][0]["data"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(call, batches))
    for rows, answer in zip(batches, answers, strict=True):
        reference = expected(kind, artifacts[kind][0], rows)[output]
        np.testing.assert_allclose(np.reshape(answer, reference.shape), reference, rtol=1e-5, atol=1e-7)


def test_the_device_shows_in_the_start_up_line_and_the_metrics(served: tuple[str, Server]) -> None:
    kind, server = served
    loaded = next(json.loads(line) for line in server.log().splitlines() if '"model_loaded"' in line)
    assert (loaded["runtime"], loaded["device"]) == (kind.removesuffix("-mlp"), "cpu")
    assert loaded["device_reason"]  # auto says why it chose the CPU
    metrics = server.request("GET", "/metrics").body.decode()
    assert re.search(rf'model_server_model_info{{device="cpu",name="iris",runtime="{kind.removesuffix("-mlp")}"',
                     metrics)


# -- a graph of two named inputs ---------------------------------------------------------------------

A = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
B = [[2], [10]]


def two(a: Any = None, b: Any = None, **extra: Any) -> dict[str, Any]:
    tensors = [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": A if a is None else a},
               {"name": "b", "shape": [2, 1], "datatype": "INT64", "data": B if b is None else b}]
    return {"inputs": tensors, **extra}


def test_several_named_inputs_in_any_order(two_inputs: Server) -> None:
    document = two()
    document["inputs"].reverse()
    body = two_inputs.infer(document).json()
    assert body["outputs"] == [{"name": "scaled", "datatype": "FP32", "shape": [2, 3],
                                "data": [2.0, 4.0, 6.0, 40.0, 50.0, 60.0]}]
    metadata = two_inputs.request("GET", "/v2/models/iris").json()
    assert metadata["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 3]},
                                  {"name": "b", "datatype": "INT64", "shape": [-1, 1]}]


def test_a_missing_extra_repeated_or_wrongly_typed_input_is_named(two_inputs: Server) -> None:
    document = two()
    del document["inputs"][1]
    assert error_of(two_inputs.infer(document)) == (
        "inputs: model 'iris' needs input 'b' (INT64 [-1, 1]), which the request does not give")
    document = two()
    document["inputs"].append({"name": "c", "shape": [2, 1], "datatype": "FP32", "data": [[1], [2]]})
    assert error_of(two_inputs.infer(document)) == "inputs[2].name: model 'iris' has no input 'c'; its inputs are a, b"
    document = two()
    document["inputs"][1] = dict(document["inputs"][0])
    assert error_of(two_inputs.infer(document)) == "inputs[1].name: input 'a' is given twice"
    document = two()
    document["inputs"][0]["datatype"] = "FP64"
    assert error_of(two_inputs.infer(document)) == "inputs[0].datatype: input 'a' of model 'iris' is FP32, got 'FP64'"
    document = two(b=[[2]])
    document["inputs"][1]["shape"] = [1, 1]
    assert error_of(two_inputs.infer(document)) == (
        "inputs[1].shape: 1 rows, but inputs[0] has 2: the inputs of one request have the same number of rows")
    assert error_of(two_inputs.request("POST", "/v1/models/iris:predict", {"instances": A})) == (
        "instances: model 'iris' takes 2 inputs (a, b): send them by name with V2 (/v2/models/iris/infer)")


def test_several_binary_inputs_with_the_triton_client(two_inputs: Server) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{two_inputs.port}")
    a, b = triton.InferInput("a", [2, 3], "FP32"), triton.InferInput("b", [2, 1], "INT64")
    a.set_data_from_numpy(np.array(A, dtype=np.float32))
    b.set_data_from_numpy(np.array(B, dtype=np.int64), binary_data=False)  # one binary, one JSON
    result = client.infer("iris", [b, a])
    np.testing.assert_array_equal(result.as_numpy("scaled"), np.array(A) * np.array(B))


def test_requests_of_several_inputs_share_batches_and_get_their_own_rows(two_inputs: Server) -> None:
    def call(index: int) -> tuple[int, list[float]]:
        rows = index % 3 + 1
        a = [[float(index)] * 3] * rows
        document = {"inputs": [{"name": "a", "shape": [rows, 3], "datatype": "FP32", "data": a},
                               {"name": "b", "shape": [rows, 1], "datatype": "INT64", "data": [[2]] * rows}]}
        return index, list(two_inputs.infer(document).json()["outputs"][0]["data"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(120)))
    for index, data in answers:
        assert data == [2.0 * index] * 3 * (index % 3 + 1)
    metrics = two_inputs.request("GET", "/metrics").body.decode()
    calls = float(re.search(r"^model_server_batch_rows_count ([\d.]+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert calls < 120, "requests were not batched"
