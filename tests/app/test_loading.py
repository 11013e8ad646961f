"""Safe model loading: the server refuses to start, with a clear message, on any doubt."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path

import joblib
import pytest
import sklearn
import skops.io

from model_server.errors import ModelLoadError
from model_server.model import load_model
from model_server.settings import ServerSettings
from tests.support.server import start_server, write_model
from train import train


def settings(path: Path, sha256: str | None, **extra: object) -> ServerSettings:
    return ServerSettings(path=path, sha256=sha256, name="iris", **extra)  # type: ignore[arg-type]


def refusal(tmp_path: Path, path: Path, sha256: str | None, **env: str) -> str:
    server = start_server(tmp_path, path, sha256, wait=False, **env)
    code = server.process.wait(30)
    assert code != 0
    return server.log()


def test_pinned_model_loads_and_reports_itself(tmp_path: Path) -> None:
    path, digest = write_model(tmp_path)
    model = load_model(settings(path, digest))
    assert (model.sha256, model.n_features, set(model.outputs)) == (digest, 4, {"predict", "predict_proba"})
    assert model.inputs[0].nan_ok is False


def test_a_file_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    path, digest = write_model(tmp_path)
    path.write_bytes(path.read_bytes() + b"\x00")
    message = refusal(tmp_path, path, digest)
    assert f"refusing to start: model file {path} has sha256" in message
    assert f"but MODEL_SHA256 pins {digest}" in message


def test_missing_pin_is_refused_unless_local_development_is_declared(tmp_path: Path) -> None:
    path, _ = write_model(tmp_path)
    assert "MODEL_SHA256 is not set" in refusal(tmp_path, path, None)
    server = start_server(tmp_path, path, None, MODEL_ALLOW_UNPINNED="true")
    try:
        assert "serving an unpinned model" in server.log()
    finally:
        assert server.stop() == 0


def test_truncated_artifact_is_refused(tmp_path: Path) -> None:
    path, _ = write_model(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # pinned, but broken
    assert "is truncated or corrupt" in refusal(tmp_path, path, digest)


def test_missing_artifact_is_refused(tmp_path: Path) -> None:
    assert "does not exist (MODEL_PATH)" in refusal(tmp_path, tmp_path / "absent.pkl", "0" * 64)


def test_model_pickled_by_another_scikit_learn_version_is_refused(tmp_path: Path) -> None:
    data = pickle.dumps(train())
    current = sklearn.__version__.encode()
    older = b"0.0.0"[: len(current)].ljust(len(current), b"0")
    tampered = data.replace(current, older)
    assert tampered != data
    path = tmp_path / "old.pkl"
    path.write_bytes(tampered)
    expected = rf"saved with scikit-learn .* this server runs {re.escape(sklearn.__version__)}"
    with pytest.raises(ModelLoadError, match=expected):
        load_model(settings(path, hashlib.sha256(tampered).hexdigest()))


def test_skops_artifact_loads_with_default_trusted_types(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(skops.io.dumps(train()))
    model = load_model(settings(path, hashlib.sha256(path.read_bytes()).hexdigest()))
    assert model.n_features == 4


def test_skops_types_are_trusted_from_settings_never_from_the_artifact(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    estimator = FunctionTransformer(func=len).fit([[1, 2, 3, 4]])
    path = tmp_path / "custom.skops"
    path.write_bytes(skops.io.dumps(estimator))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelLoadError, match=r"contains types that are not trusted: builtins\.len"):
        load_model(settings(path, digest))


def test_object_without_predict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notamodel.pkl"
    buffer = io.BytesIO()
    joblib.dump({"weights": [1, 2]}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ModelLoadError, match="holds a dict, which has no predict"):
        load_model(settings(path, hashlib.sha256(path.read_bytes()).hexdigest()))


def test_unknown_extension_needs_an_explicit_format(tmp_path: Path) -> None:
    path, digest = write_model(tmp_path, "model.bin")
    with pytest.raises(ModelLoadError, match="MODEL_FORMAT"):
        load_model(settings(path, digest))
    assert load_model(settings(path, digest, format="pickle")).n_features == 4


def test_invalid_settings_name_the_variable(tmp_path: Path) -> None:
    path, digest = write_model(tmp_path)
    message = refusal(tmp_path, path, digest, MODEL_PORT="http")
    assert "invalid settings: MODEL_PORT" in message
