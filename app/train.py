"""Train the reference model deterministically and write the artifact with its sha256.

    python train.py                      # model.pkl + model.pkl.sha256 (what the image serves)
    python train.py --format skops --out model.skops
    python train.py --examples examples  # one example per runtime: examples/<kind>/model.* + .sha256

The examples are iris classifiers trained on the same rows, one per runtime: XGBoost (UBJSON),
LightGBM (text), ONNX converted from the scikit-learn model above with skl2onnx (ai.onnx.ml
operators: CPU only), and ONNX built from core operators only out of a small trained MLP (the
example that can run on a GPU). Each ONNX conversion is checked before it is written: the same
labels as its source model, and probabilities within ONNX_TOLERANCE (ONNX Runtime computes in
float32, scikit-learn in float64).

The data set (iris) ships inside scikit-learn, the solver is deterministic and the seed
is fixed, so the same library versions produce byte-identical artifacts on one machine; another
CPU may round the solver's last bits differently (numpy and OpenBLAS pick their kernels per CPU),
which tests/app/test_artifact.py allows and nothing more. The rows of the model
gate's evaluation set (eval/iris.csv) are held out: the gate judges the model on rows it never saw.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

PICKLE_PROTOCOL = 5
EVAL_SET = Path(__file__).resolve().parent / "eval" / "iris.csv"
ONNX_TOLERANCE = 1e-5  # absolute, on probabilities
# Pinned, so a newer converter does not silently raise what the serving ONNX Runtime must support.
ONNX_OPSETS = {"": 17, "ai.onnx.ml": 3}


def held_out_rows() -> list[int]:
    """The rows of load_iris() in the gate's evaluation set: one list, so the two never overlap."""
    with EVAL_SET.open(newline="") as file:
        return [int(record["source_row"]) for record in csv.DictReader(file)]


def training_rows() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_iris(return_X_y=True)
    trained_on = np.setdiff1d(np.arange(len(labels)), held_out_rows())
    return features[trained_on], labels[trained_on]


def train() -> Pipeline:
    features, labels = training_rows()
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=1000, random_state=0)),
    ])
    return pipeline.fit(features, labels)


def serialize(model: Pipeline, fmt: str) -> bytes:
    if fmt == "skops":
        return bytes(skops.io.dumps(model))
    buffer = io.BytesIO()
    joblib.dump(model, buffer, protocol=PICKLE_PROTOCOL)
    return buffer.getvalue()


def xgboost_example() -> bytes:
    import xgboost as xgb

    features, labels = training_rows()
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(features, labels), num_boost_round=20)
    return bytes(booster.save_raw("ubj"))


def lightgbm_example() -> bytes:
    import lightgbm as lgb

    features, labels = training_rows()
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1,
              "deterministic": True, "seed": 0, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(features, labels), num_boost_round=20)
    return str(booster.model_to_string()).encode()


def check_conversion(onnx_model: bytes, source: Any) -> None:
    """The converted graph predicts what its source model predicts, on every iris row."""
    import onnxruntime as ort

    features = load_iris(return_X_y=True)[0]
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"X": features.astype(np.float32)})
    expected = source.predict_proba(features.astype(np.float32).astype(np.float64))
    if not np.array_equal(labels, source.predict(features.astype(np.float32).astype(np.float64))):
        raise SystemExit("the ONNX conversion predicts other labels than its source model")
    worst = float(np.max(np.abs(probabilities - expected)))
    if worst > ONNX_TOLERANCE:
        raise SystemExit(f"the ONNX conversion's probabilities differ by {worst:.2e}, over {ONNX_TOLERANCE:g}")


def onnx_example() -> bytes:
    """train()'s pipeline converted by skl2onnx: Scaler, LinearClassifier, Normalizer (ai.onnx.ml)."""
    from skl2onnx import to_onnx

    pipeline = train()
    converted = to_onnx(pipeline, training_rows()[0][:1].astype(np.float32), target_opset=ONNX_OPSETS,
                        options={"zipmap": False}, final_types=None)
    data: bytes = converted.SerializeToString()
    check_conversion(data, pipeline)
    return data


def train_mlp() -> Pipeline:
    from sklearn.neural_network import MLPClassifier

    features, labels = training_rows()
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("classify", MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0))])
    return pipeline.fit(features, labels)


def mlp_example() -> bytes:
    """A small MLP as an ONNX graph of core operators only (Sub, Div, MatMul, Add, Relu, Softmax, ArgMax):
    every node has a CUDA kernel, so ONNX Runtime can run all of it on a GPU."""
    from onnx import TensorProto, helper, numpy_helper

    pipeline = train_mlp()
    scale, mlp = pipeline.named_steps["scale"], pipeline.named_steps["classify"]
    weights = {"mean": scale.mean_, "std": scale.scale_, "w1": mlp.coefs_[0], "b1": mlp.intercepts_[0],
               "w2": mlp.coefs_[1], "b2": mlp.intercepts_[1]}
    initializers = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    nodes = [helper.make_node("Sub", ["X", "mean"], ["centred"]), helper.make_node("Div", ["centred", "std"], ["z"]),
             helper.make_node("MatMul", ["z", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["h2"]),
             helper.make_node("Add", ["h2", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0)]
    graph = helper.make_graph(
        nodes, "iris_mlp", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSETS[""])],
                              producer_name="model-serving app/train.py")
    data: bytes = model.SerializeToString()
    check_conversion(data, pipeline)
    return data


EXAMPLES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "xgboost": ("model.ubj", xgboost_example),
    "lightgbm": ("model.txt", lightgbm_example),
    "onnx": ("model.onnx", onnx_example),
    "onnx-mlp": ("model.onnx", mlp_example),
}


def write_pinned(path: Path, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    print(f"wrote {path} ({len(data)} bytes), sha256 {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["pickle", "skops"], default="pickle")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "model.pkl")
    parser.add_argument("--examples", type=Path, help="write one example per runtime under this folder instead")
    options = parser.parse_args()
    if options.examples is not None:
        for kind, (name, build) in EXAMPLES.items():
            write_pinned(options.examples / kind / name, build())
        return
    write_pinned(options.out, serialize(train(), options.format))


if __name__ == "__main__":
    main()
