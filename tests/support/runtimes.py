"""Artifacts of every runtime, fitted into a test's folder with app/train.py's own builders, and
the small ONNX graphs the protocol's multi-input rules are tested on (never committed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

import train

# What each runtime's example is written as, and the output its predictions are read from.
EXAMPLES = {kind: name for kind, (name, _) in train.EXAMPLES.items()}
IRIS_ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def write(directory: Path, name: str, data: bytes) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def example(directory: Path, kind: str) -> tuple[Path, str]:
    """The example of `kind` (xgboost, lightgbm, onnx, onnx-mlp), built as `make model` builds it."""
    name, build = train.EXAMPLES[kind]
    return write(directory / kind, name, build())


def two_input_graph(opset: int = 17, ir_version: int | None = None) -> bytes:
    """scaled = a * float(b): input a FP32 [N, 3], input b INT64 [N, 1]; output scaled FP32 [N, 3]."""
    nodes = [helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["a", "b_float"], ["scaled"])]
    graph = helper.make_graph(nodes, "two_inputs",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 1])],
                              [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    data: bytes = model.SerializeToString()
    return data


def zipmap_graph() -> bytes:
    """train()'s pipeline converted with skl2onnx's default ZipMap: probabilities as a list of maps."""
    from skl2onnx import to_onnx

    converted = to_onnx(train.train(), IRIS_ROWS[:1].astype(np.float32), target_opset=train.ONNX_OPSETS)
    data: bytes = converted.SerializeToString()
    return data
