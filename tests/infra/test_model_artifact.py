"""The model a stack deploys (modelService.model, .format) and the pool it runs on: the image, the
device and the GPU resources follow the pool, and every artifact the server would refuse is refused
at config time, naming the key and the fix."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from infra.settings import StackConfigError, load_settings
from infra.settings.artifact import APP_DIR, inspect
from infra.settings.models import BATCH_DEFAULTS
from review.records import Synthesis
from review.stack_files import stack_config
from tests.support.stacks import VARIANTS, synthesized_variant, synthesized_with

XGBOOST, ONNX_MLP, ONNX_TREES, LIGHTGBM = ("examples/xgboost/model.ubj", "examples/onnx-mlp/model.onnx",
                                           "examples/onnx/model.onnx", "examples/lightgbm/model.txt")
ON_GPU = {"pool": "gpu", "gpus": 1, "replicas": 1, "minReplicas": 1, "maxReplicas": 2}


def problems(model: dict[str, Any], stack: str = "dev") -> dict[str, str]:
    """path → 'message / fix' of each problem the dev stack's settings report with this modelService."""
    raw, _ = stack_config(stack, {"modelService": model})
    with pytest.raises(StackConfigError) as caught:
        load_settings(raw, project="model-serving", stack=stack)
    return {found.path: f"{found.message} / {found.fix}" for found in caught.value.problems}


def settings(model: dict[str, Any], stack: str = "dev") -> Any:
    raw, _ = stack_config(stack, {"modelService": model})
    return load_settings(raw, project="model-serving", stack=stack)


def server(synthesis: Synthesis) -> dict[str, Any]:
    (workload,) = [r for kind in ("Rollout", "Deployment") for r in synthesis.objects(kind, namespace="model-serving")]
    (container,) = workload.inputs["spec"]["template"]["spec"]["containers"]
    return {"pod": workload.inputs["spec"]["template"]["spec"], "container": container,
            "env": {item["name"]: item["value"] for item in container["env"]}}


# -- what gets deployed --------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "fmt", "runtime"), [
    ("model.pkl", "pickle", "sklearn"), (XGBOOST, "xgboost", "xgboost"), (LIGHTGBM, "lightgbm", "lightgbm"),
    (ONNX_TREES, "onnx", "onnx"), ("./examples/../examples/onnx-mlp/model.onnx", "onnx", "onnx"),
])
def test_the_format_is_told_as_the_server_tells_it(model: str, fmt: str, runtime: str) -> None:
    artifact = settings({"model": model}).model_artifact
    assert (artifact.format, artifact.runtime) == (fmt, runtime)
    assert artifact.sha256 == (APP_DIR / f"{artifact.file}.sha256").read_text().split()[0]
    assert not artifact.file.startswith(".")


def test_a_cpu_pool_gets_the_cpu_image_and_device_as_before(stack_synthesis: Synthesis) -> None:
    image = stack_synthesis.one("docker:index/image:Image").inputs["build"]
    assert (image["dockerfile"], image["args"]["MODEL_FILE"]) == ("app/Dockerfile", "model.pkl")
    found = server(stack_synthesis)
    assert found["env"]["MODEL_DEVICE"] == "cpu" and found["env"]["MODEL_FORMAT"] == "pickle"
    # The batching the committed stacks always had.
    assert (found["env"]["MODEL_MAX_BATCH_SIZE"], found["env"]["MODEL_MAX_BATCH_WAIT_MS"]) == ("1024", "0")
    assert "nvidia.com/gpu" not in found["container"]["resources"]["limits"]
    assert found["pod"]["tolerations"] == []


def test_a_cpu_model_other_than_the_default_gets_the_cpu_image() -> None:
    synthesis = synthesized_with("dev", {"modelService": {"model": LIGHTGBM}})
    image = synthesis.one("docker:index/image:Image").inputs["build"]
    assert (image["dockerfile"], image["args"]["MODEL_FILE"]) == ("app/Dockerfile", LIGHTGBM)
    env = server(synthesis)["env"]
    assert (env["MODEL_FORMAT"], env["MODEL_DEVICE"]) == ("lightgbm", "cpu")
    assert env["MODEL_SHA256"] == (APP_DIR / f"{LIGHTGBM}.sha256").read_text().split()[0]


def test_a_gpu_model_gets_the_cuda_image_the_device_the_gpu_and_the_toleration() -> None:
    synthesis = synthesized_variant("prod-gpu-https")
    image = synthesis.one("docker:index/image:Image").inputs
    assert (image["build"]["dockerfile"], image["build"]["args"]["MODEL_FILE"]) == ("app/Dockerfile.cuda", XGBOOST)
    on_cpu = {**VARIANTS["prod-gpu-https"][1]["modelService"], "pool": "cpu", "gpus": 0}
    cpu_tag = synthesized_with("prod", {"modelService": on_cpu}).one(
        "docker:index/image:Image").inputs["build"]["args"]["VERSION"]
    assert image["build"]["args"]["VERSION"] != cpu_tag  # one tag per image
    found = server(synthesis)
    assert (found["env"]["MODEL_FORMAT"], found["env"]["MODEL_DEVICE"]) == ("xgboost", "cuda")
    assert found["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in found["pod"]["tolerations"]
    assert found["pod"]["nodeSelector"] == {"model-serving/pool": "gpu"}
    # GPU batching, provisional until bench/gpu_check.sh measures it.
    assert (found["env"]["MODEL_MAX_BATCH_SIZE"], found["env"]["MODEL_MAX_BATCH_WAIT_MS"]) == ("8192", "2")


def test_an_onnx_graph_of_core_operators_runs_on_the_gpu() -> None:
    found = settings({**ON_GPU, "model": ONNX_MLP})
    assert (found.model_device, found.model_artifact.format) == ("cuda", "onnx")


def test_batching_set_by_the_operator_wins_on_either_device() -> None:
    for model in ({"model": XGBOOST}, {**ON_GPU, "model": XGBOOST}):
        found = settings({**model, "maxBatchSize": 256, "maxBatchWaitMs": 1})
        assert found.model_service.batching(found.model_device) == (256, 1)


def test_the_programs_batching_defaults_are_the_servers() -> None:
    from model_server import model

    assert BATCH_DEFAULTS == {"cpu": model.CPU_BATCH, "cuda": model.GPU_BATCH}


# -- refusals --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "key", "expected"), [
    ({"model": "examples/xgboost/missing.ubj"}, "modelService.model",
     "app/examples/xgboost/missing.ubj does not exist / train the bundled ones with `make model`, or copy yours "
     "there (and pin it: (cd app/examples/xgboost && sha256sum missing.ubj > missing.ubj.sha256))"),
    ({"model": "/etc/passwd"}, "modelService.model",
     "'/etc/passwd' is not a path under app/ (the image is built from app/ alone) / copy the artifact into app/, "
     "e.g. app/models/, then pulumi config set --path 'modelService.model' models/<file>"),
    ({"model": "../Pulumi.yaml"}, "modelService.model", "'../Pulumi.yaml' is not a path under app/"),
    ({"model": "train.py"}, "modelService.model",
     "app/train.py is not in the image's build context (app/.dockerignore leaves it out) / add the line !train.py "
     "to app/.dockerignore"),
    ({"format": "tensorflow"}, "modelService.format",
     "'tensorflow' is not a model format; choose one of pickle, skops, xgboost, lightgbm, onnx / pulumi config set "
     "--path 'modelService.format' <format>, or remove it to let the file decide"),
    ({**ON_GPU}, "modelService.pool",
     "model.pkl is a scikit-learn model, which runs on CPU only (scikit-learn has no GPU support), but pool 'gpu' "
     "is a GPU pool: the GPUs would idle / move it to a CPU pool (pulumi config set --path 'modelService.pool' "
     "<cpu pool>, and --path 'modelService.gpus' 0), or deploy a model a GPU can run: XGBoost, or ONNX of core "
     "operators (e.g. examples/onnx-mlp/model.onnx)"),
    ({**ON_GPU, "model": LIGHTGBM}, "modelService.pool",
     f"{LIGHTGBM} is a LightGBM model, which runs on CPU only (the LightGBM wheel is built without CUDA)"),
    ({**ON_GPU, "model": ONNX_TREES}, "modelService.pool",
     f"{ONNX_TREES} uses ai.onnx.ml operators (LinearClassifier, Normalizer, Scaler), which ONNX Runtime runs on "
     "CPU only, but pool 'gpu' is a GPU pool: the server refuses such a graph on CUDA / move it to a CPU pool"),
    ({"pool": "gpu", "model": XGBOOST}, "modelService.gpus", "0 GPUs requested on GPU pool 'gpu'"),
    ({"gpus": 1, "model": XGBOOST}, "modelService.gpus", "1 GPU(s) requested, but pool 'cpu' has no GPUs"),
])
def test_an_artifact_that_cannot_be_served_where_it_is_placed_is_refused(model: dict[str, Any], key: str,
                                                                         expected: str) -> None:
    found = problems(model)
    assert key in found, found
    assert found[key].startswith(expected), found[key]


def test_every_problem_is_reported_together() -> None:
    raw, _ = stack_config("dev", {"modelService": {"model": "missing.pkl", "format": "tensorflow"}, "azCount": 1})
    with pytest.raises(StackConfigError) as caught:
        load_settings(raw, project="model-serving", stack="dev")
    assert {"modelService.model", "modelService.format", "azCount"} <= {found.path for found in caught.value.problems}


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def pinned(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.with_name(f"{path.name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def refusal(app_dir: Path, model: str, fmt: str | None = None, gpu_pool: str | None = None) -> str:
    artifact, found = inspect(model, fmt, gpu_pool, app_dir)
    assert artifact is None and len(found) == 1
    return f"{found[0].path}: {found[0].message} / {found[0].fix}"


def test_an_artifact_without_its_pin_is_refused(app_copy: Path) -> None:
    (app_copy / f"{XGBOOST}.sha256").unlink()
    assert refusal(app_copy, XGBOOST).startswith(
        f"modelService.model: the pin app/{XGBOOST}.sha256 is missing (app/{XGBOOST} has sha256 ")
    assert refusal(app_copy, XGBOOST).endswith(
        "/ if this is the model to serve, pin it: (cd app/examples/xgboost && sha256sum model.ubj > model.ubj.sha256)")


def test_an_artifact_its_pin_does_not_name_is_refused(app_copy: Path) -> None:
    (app_copy / "model.pkl").write_bytes(b"another model")
    assert "the pin app/model.pkl.sha256 pins another file" in refusal(app_copy, "model.pkl")


def test_a_file_whose_format_cannot_be_told_names_modelservice_format(app_copy: Path) -> None:
    pinned(app_copy / "examples" / "xgboost" / "model.bst", b"\x00\x01binary")
    found = refusal(app_copy, "examples/xgboost/model.bst")
    assert found.startswith("modelService.format: cannot tell whether app/examples/xgboost/model.bst is an XGBoost")
    assert found.endswith("/ pulumi config set --path 'modelService.format' xgboost|lightgbm")
    artifact, none = inspect("examples/xgboost/model.bst", "lightgbm", None, app_copy)
    assert artifact is not None and artifact.format == "lightgbm" and not none  # the declared format wins


def test_a_damaged_onnx_model_for_a_gpu_pool_is_refused(app_copy: Path) -> None:
    pinned(app_copy / ONNX_MLP, b"\xff" * 32)
    assert refusal(app_copy, ONNX_MLP, gpu_pool="gpu").startswith(
        f"modelService.model: {ONNX_MLP} cannot be read as an ONNX model")


def test_the_plan_shows_the_image_the_model_and_its_device() -> None:
    from review.summary import summary

    shown = summary(synthesized_variant("prod-gpu-https"))
    assert f"dockerfile=app/Dockerfile.cuda  model={XGBOOST}" in shown
    assert "model=xgboost on cuda" in shown
