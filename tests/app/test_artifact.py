"""The committed model artifact is what app/train.py produces, and its pin matches it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.server import APP_DIR


def _train(out: Path) -> bytes:
    subprocess.run([sys.executable, str(APP_DIR / "train.py"), "--out", str(out)], check=True, capture_output=True)
    return out.read_bytes()


def _fitted_state(model: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Each pipeline step's name, type, and fitted attributes (those ending in `_`)."""
    return [(name, type(step).__name__, {key: value for key, value in vars(step).items() if key.endswith("_")})
            for name, step in model.steps]


def test_training_is_deterministic_and_reproduces_the_committed_artifact(tmp_path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris

    trained = _train(tmp_path / "first.pkl")
    assert _train(tmp_path / "second.pkl") == trained, "train.py is not deterministic"
    committed = (APP_DIR / "model.pkl").read_bytes()
    assert (APP_DIR / "model.pkl.sha256").read_text().split()[0] == hashlib.sha256(committed).hexdigest()
    if trained == committed:
        return
    # Another CPU may round the solver's last bits differently (numpy's and OpenBLAS's kernels are
    # chosen per CPU at run time): the same model is then the same fitted state to rounding, and the
    # same predictions. Anything more is a change of train.py or a library: `make model` and commit.
    ours, theirs = joblib.load(tmp_path / "first.pkl"), joblib.load(APP_DIR / "model.pkl")
    our_state, their_state = _fitted_state(ours), _fitted_state(theirs)
    assert [(name, kind, sorted(state)) for name, kind, state in our_state] == [
        (name, kind, sorted(state)) for name, kind, state in their_state], "retrain with `make model`"
    for (name, _, state), (_, _, expected) in zip(our_state, their_state, strict=True):
        for key, value in state.items():
            np.testing.assert_allclose(value, expected[key], rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name}.{key}: retrain with `make model` and commit")
    features = load_iris(return_X_y=True)[0]
    assert ours.predict(features).tolist() == theirs.predict(features).tolist()


def test_the_examples_are_what_train_py_builds_and_their_pins_match(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(APP_DIR / "train.py"), "--examples", str(tmp_path)], check=True,
                   capture_output=True)
    built = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    assert {str(path) for path in built} == {
        "lightgbm/model.txt", "lightgbm/model.txt.sha256", "onnx-mlp/model.onnx", "onnx-mlp/model.onnx.sha256",
        "onnx/model.onnx", "onnx/model.onnx.sha256", "xgboost/model.ubj", "xgboost/model.ubj.sha256"}
    for path in built:
        committed = APP_DIR / "examples" / path
        assert committed.read_bytes() == (tmp_path / path).read_bytes(), f"{committed}: rebuild with `make model`"
        if path.suffix != ".sha256":
            pin = committed.with_name(committed.name + ".sha256").read_text().split()[0]
            assert pin == hashlib.sha256(committed.read_bytes()).hexdigest()


def test_the_onnx_conversions_are_checked_against_their_source_models() -> None:
    import onnxruntime as ort
    from sklearn.datasets import load_iris

    import train

    features = load_iris(return_X_y=True)[0].astype(np.float32)
    for example, source in (("onnx", train.train()), ("onnx-mlp", train.train_mlp())):
        session = ort.InferenceSession(str(APP_DIR / "examples" / example / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        labels, probabilities = session.run(["label", "probabilities"], {"X": features})
        assert labels.tolist() == source.predict(features.astype(np.float64)).tolist()
        np.testing.assert_allclose(probabilities, source.predict_proba(features.astype(np.float64)),
                                   rtol=0, atol=train.ONNX_TOLERANCE)
