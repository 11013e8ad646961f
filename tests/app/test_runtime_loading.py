"""Safe loading for every runtime: the pin, a corrupt or truncated file, a model saved by an
incompatible library version, the wrong format declared, and the devices: the server refuses to
start (exit 1) with a message naming the file, the setting and the fix."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pytest
import xgboost as xgb

from model_server.errors import ModelLoadError
from model_server.model import load_model
from model_server.runtimes.base import in_child
from model_server.settings import ServerSettings
from tests.support.runtimes import example, two_input_graph, write, zipmap_graph
from tests.support.server import start_server
from train import training_rows

KINDS = ["xgboost", "lightgbm", "onnx", "onnx-mlp"]


def settings(path: Path, sha256: str | None, **extra: object) -> ServerSettings:
    return ServerSettings(path=path, sha256=sha256, name="iris", **extra)  # type: ignore[arg-type]


def load_refusal(path: Path, **extra: object) -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_model(settings(path, hashlib.sha256(path.read_bytes()).hexdigest(), **extra))
    return str(caught.value)


def refusal(tmp_path: Path, path: Path, sha256: str | None, code: int = 1, **env: str) -> str:
    server = start_server(tmp_path, path, sha256, wait=False, **env)
    assert server.process.wait(60) == code, server.log()
    return server.log()


@pytest.mark.parametrize("kind", KINDS)
def test_a_tampered_artifact_is_refused(tmp_path: Path, kind: str) -> None:
    path, digest = example(tmp_path, kind)
    path.write_bytes(path.read_bytes().replace(b"\x00", b"\x01", 1) if kind != "lightgbm"
                     else path.read_bytes().replace(b"Tree=0", b"Tree=9"))
    message = refusal(tmp_path, path, digest)
    assert f"refusing to start: model file {path} has sha256 " in message
    assert f"but MODEL_SHA256 pins {digest}: refusing to load an artifact that is not the pinned one" in message


@pytest.mark.parametrize("kind", KINDS)
def test_a_truncated_artifact_is_refused(tmp_path: Path, kind: str) -> None:
    path, _ = example(tmp_path, kind)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert f"model file {path} is truncated or corrupt" in load_refusal(path)


def test_a_lightgbm_model_its_parser_would_abort_on_is_refused_not_a_crash(tmp_path: Path) -> None:
    path, _ = example(tmp_path, "lightgbm")
    path.write_bytes(path.read_bytes()[:3000] + b"\nend of trees\n")  # LightGBM calls std::terminate on it
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    message = refusal(tmp_path, path, digest)
    assert (f"refusing to start: model file {path} is truncated or corrupt (LightGBM's model parser crashed the "
            "process (SIGABRT))") in message


def test_the_probe_process_reports_a_crash_a_hang_and_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import faulthandler
    import time

    from model_server.runtimes import base

    monkeypatch.setattr(base, "PROBE_TIMEOUT_S", 0.5)
    assert in_child(lambda: time.sleep(30), "a stuck probe") == "a stuck probe did not answer within 0.5 s"
    assert in_child(lambda: None, "nothing") is None
    assert in_child(lambda: "no GPU", "a probe") == "no GPU"
    def crash() -> None:
        faulthandler.disable()  # pytest's, inherited through the fork: its dump would fill the test log
        os.abort()

    assert in_child(crash, "the parser", quiet=True) == "the parser crashed the process (SIGABRT)"


@pytest.mark.parametrize(("declared", "kind", "fragment"), [
    ("lightgbm", "xgboost", "is not a LightGBM text model (it does not begin with 'tree')"),
    ("xgboost", "lightgbm", "is not in an XGBoost format this server reads (UBJSON or JSON)"),
    ("xgboost", "onnx", "is not in an XGBoost format this server reads"),
    ("onnx", "xgboost", "is truncated or corrupt, or not ONNX"),
    ("pickle", "onnx", "is truncated or corrupt"),
])
def test_the_wrong_format_declared_is_refused_naming_model_format(tmp_path: Path, declared: str, kind: str,
                                                                   fragment: str) -> None:
    path, digest = example(tmp_path, kind)
    message = refusal(tmp_path, path, digest, MODEL_FORMAT=declared)
    assert fragment in message
    assert f"(MODEL_FORMAT={declared} says it is one: is it?)" in message


def test_xgboost_json_holding_no_learner_is_refused(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "settings.json", b'{"name": "not a model"}')
    assert "is JSON without an XGBoost `learner`" in load_refusal(path)


def test_the_old_xgboost_binary_format_is_refused_with_the_hint_to_resave(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "model.bin", b"binf" + bytes(200))
    message = load_refusal(path, format="xgboost")
    assert "XGBoost >= 3.1 cannot read the old binary format" in message
    assert "save it with booster.save_model('model.ubj')" in message


def test_a_bst_file_is_told_apart_by_its_header(tmp_path: Path) -> None:
    for kind in ("xgboost", "lightgbm"):
        built, _ = example(tmp_path, kind)
        path, digest = write(tmp_path / kind, "model.bst", built.read_bytes())
        assert load_model(settings(path, digest)).runtime.kind == kind
    garbage, _ = write(tmp_path, "old.bst", b"\x00\x01binary")
    message = load_refusal(garbage)
    assert "cannot tell whether" in message and "an XGBoost or a LightGBM model" in message
    assert message.endswith("set MODEL_FORMAT=xgboost|lightgbm")


def test_an_unknown_extension_lists_every_format(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "model.weights", b"x")
    assert load_refusal(path).endswith("; set MODEL_FORMAT=pickle|skops|xgboost|lightgbm|onnx")


def test_an_xgboost_model_saved_by_a_newer_xgboost_is_refused(tmp_path: Path) -> None:
    built, _ = example(tmp_path, "xgboost")
    booster = xgb.Booster()
    booster.load_model(str(built))
    data = bytes(booster.save_raw("json"))
    newer = re.sub(rb'"version":\[\d+,\d+,\d+\]', b'"version":[9,0,0]', data)
    path, _ = write(tmp_path, "newer.json", newer)
    message = load_refusal(path)
    assert f"was saved with XGBoost 9.0.0, this server runs {xgb.__version__}" in message
    ubj = bytes(booster.save_raw("ubj"))
    major, minor = (int(part) for part in xgb.__version__.split(".")[:2])
    newer_ubj = ubj.replace(bytes([ord("i"), major, ord("i"), minor]), bytes([ord("i"), major + 1, ord("i"), 0]))
    path, _ = write(tmp_path, "newer.ubj", newer_ubj)
    assert f"was saved with XGBoost {major + 1}.0." in load_refusal(path)


def test_a_pickled_xgboost_model_loads_only_when_pinned_and_of_this_version(tmp_path: Path) -> None:
    features, labels = training_rows()
    classifier = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(features, labels)
    buffer = io.BytesIO()
    joblib.dump(classifier, buffer)
    path, digest = write(tmp_path, "model.pkl", buffer.getvalue())
    model = load_model(settings(path, digest))  # pinned: trusted, as a scikit-learn pickle is
    assert model.runtime.kind == "xgboost" and set(model.outputs) == {"predict", "predict_proba"}
    model.warm_up()
    assert model.predict({"input-0": features[:3].astype(np.float32)}, frozenset({"predict"}))["predict"].tolist() \
        == classifier.predict(features[:3]).tolist()
    assert "MODEL_SHA256 is not set" in refusal(tmp_path, path, None, code=2)
    major, minor = (int(part) for part in xgb.__version__.split(".")[:2])
    other = pickle.dumps(classifier).replace(bytes([ord("i"), major, ord("i"), minor]),
                                             bytes([ord("i"), major - 1, ord("i"), minor]))
    old, _ = write(tmp_path, "old.pkl", other)
    message = load_refusal(old)
    assert f"is an XGBoost model pickled by XGBoost {major - 1}.{minor}." in message
    assert "a pickle is a snapshot of one version" in message


def test_a_lightgbm_model_in_a_newer_model_format_is_refused(tmp_path: Path) -> None:
    built, _ = example(tmp_path, "lightgbm")
    path, _ = write(tmp_path, "newer.txt", built.read_bytes().replace(b"\nversion=v4\n", b"\nversion=v5\n", 1))
    assert f"is in LightGBM's model format v5, this server's LightGBM {lgb.__version__} reads v4" in load_refusal(path)


def test_an_onnx_graph_needing_a_newer_onnx_runtime_is_refused(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "newer.onnx", two_input_graph(ir_version=99))
    message = load_refusal(path)
    assert f"needs a newer ONNX Runtime than this server's {ort.__version__}" in message
    assert "export it with an older opset, or build the image with a newer onnxruntime" in message


def test_an_onnx_zipmap_output_is_refused_with_the_converter_option(tmp_path: Path) -> None:
    path, _ = write(tmp_path, "zipmap.onnx", zipmap_graph())
    message = load_refusal(path)
    assert "output 'output_probability' is seq(map(int64,tensor(float)))" in message
    assert "convert with skl2onnx's options={'zipmap': False}" in message


# -- devices: no GPU here -----------------------------------------------------------------------------

NO_GPU = "no NVIDIA GPU is visible in this container (no /dev/nvidia<N>; request nvidia.com/gpu)"


@pytest.mark.parametrize(("kind", "fragments"), [
    ("xgboost", ["MODEL_DEVICE=cuda, but XGBoost cannot use CUDA here: ",
                 f"this XGBoost {xgb.__version__} is built without CUDA", NO_GPU,
                 "set MODEL_DEVICE=auto or cpu to serve on the CPU"]),
    ("onnx", ["MODEL_DEVICE=cuda, but this model cannot run on CUDA here: the graph has operators ONNX Runtime runs "
              "only on the CPU: ai.onnx.ml.LinearClassifier, ai.onnx.ml.Normalizer, ai.onnx.ml.Scaler",
              f"this onnxruntime {ort.__version__} has no CUDAExecutionProvider", NO_GPU,
              "export the model with core operators only, or serve it with MODEL_DEVICE=cpu"]),
    ("onnx-mlp", ["MODEL_DEVICE=cuda, but this model cannot run on CUDA here: this onnxruntime",
                  NO_GPU, "set MODEL_DEVICE=auto or cpu"]),
    ("lightgbm", ["MODEL_DEVICE=cuda, but the lightgbm runtime runs on CPU only (the LightGBM wheel is built "
                  "without CUDA): set MODEL_DEVICE=cpu or auto, and place the model on a CPU node pool"]),
])
def test_cuda_refuses_to_start_saying_why(tmp_path: Path, kind: str, fragments: list[str]) -> None:
    path, digest = example(tmp_path, kind)
    message = refusal(tmp_path, path, digest, MODEL_DEVICE="cuda")
    for fragment in fragments:
        assert fragment in message
    if kind == "onnx-mlp":
        assert "ai.onnx.ml" not in message  # core operators only: the GPU example


def test_cuda_for_scikit_learn_is_refused(tmp_path: Path) -> None:
    from tests.support.server import write_model

    path, digest = write_model(tmp_path)
    assert "the sklearn runtime runs on CPU only (scikit-learn has no GPU support)" in refusal(
        tmp_path, path, digest, MODEL_DEVICE="cuda")


@pytest.mark.parametrize("kind", ["xgboost", "onnx-mlp"])
def test_auto_falls_back_to_the_cpu_and_says_why(tmp_path: Path, kind: str) -> None:
    path, digest = example(tmp_path, kind)
    model = load_model(settings(path, digest, device="auto"))
    assert model.runtime.device == "cpu" and NO_GPU in model.runtime.device_reason
    assert (model.max_batch_size, model.max_batch_wait_s) == (1024, 0.0)  # the CPU's batching defaults
    explicit = load_model(settings(path, digest, device="cpu"))
    assert (explicit.runtime.device, explicit.runtime.device_reason) == ("cpu", "")


def test_onnx_runtimes_telemetry_is_off_before_it_is_imported() -> None:
    import subprocess
    import sys

    from tests.support.server import APP_DIR

    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = "import model_server, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    result = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(APP_DIR)},
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


def test_a_cuda_build_that_cannot_reach_the_gpu_is_found_out_by_the_probe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a GPU node whose CUDA does not start: the libraries would fall back to the CPU silently;
    the probe process sees it. Here a CPU build stands in for a CUDA build, and no device for a GPU."""
    from model_server.runtimes import base
    from model_server.runtimes import onnx as onnx_runtime
    from model_server.runtimes import xgboost as xgboost_runtime

    monkeypatch.setattr(xgboost_runtime, "gpu_absent", lambda: None)
    monkeypatch.setattr(onnx_runtime, "gpu_absent", lambda: None)
    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_CUDA": True})
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert base.gpu_absent() is not None  # the real check still sees no GPU
    xgboost_path, xgboost_pin = example(tmp_path, "xgboost")
    model = load_model(settings(xgboost_path, xgboost_pin, device="auto"))
    assert model.runtime.device == "cpu" and "XGBoost kept device 'cpu'" in model.runtime.device_reason
    with pytest.raises(ModelLoadError, match=r"MODEL_DEVICE=cuda, but XGBoost cannot use CUDA here: XGBoost kept"):
        load_model(settings(xgboost_path, xgboost_pin, device="cuda"))
    mlp_path, mlp_pin = example(tmp_path, "onnx-mlp")
    model = load_model(settings(mlp_path, mlp_pin, device="auto"))
    assert model.runtime.device == "cpu"
    assert "ONNX Runtime cannot create a CUDA session" in model.runtime.device_reason or (
        "the CUDA provider did not start" in model.runtime.device_reason)
    # The CUDA session lists CUDA alone: listing the CPU provider too while CPU fallback is disabled is a
    # session ONNX Runtime never creates, GPU or not (inference_session.cc).
    assert "Conflicting session configuration" not in model.runtime.device_reason
