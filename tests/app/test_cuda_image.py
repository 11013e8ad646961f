"""The CUDA image (app/Dockerfile.cuda), checked for real but without a GPU.

What can be known without one: the dependency set imports on the image's Python; XGBoost is the
CUDA build and ONNX Runtime has its CUDA provider; every library that provider loads is in the
image but the driver's libcuda.so.1 (which the NVIDIA container toolkit mounts from the node);
MODEL_DEVICE=cuda refuses to start, saying there is no GPU; and MODEL_DEVICE=auto serves on the
CPU, saying why. Whether the GPU path runs and pays is for bench/gpu_check.sh on a GPU machine.

The image takes 1.8 GB of wheels to build, so it is not built in `make test`: `make cuda-image`
builds it on an offline Debian trixie base and runs this module with CUDA_IMAGE naming the image.
Without CUDA_IMAGE the module is skipped, saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.test_container import UID, container_address, docker, http_json, wait_ready
from tests.support.server import APP_DIR

CUDA_IMAGE = os.environ.get("CUDA_IMAGE", "")
pytestmark = pytest.mark.skipif(not CUDA_IMAGE, reason="the CUDA image is built and checked by `make cuda-image` "
                                                       "(1.8 GB of wheels: not part of `make test`)")
SITE_PACKAGES = "/opt/venv/lib/python3.13/site-packages"
NO_GPU = "no NVIDIA GPU is visible in this container"
# The runtimes that can use a GPU, with their GPU example (app/examples/) and a request of two iris rows.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
GPU_EXAMPLES = {
    "xgboost": ("model.ubj", {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]},
                "predict"),
    "onnx-mlp": ("model.onnx", {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]},
                 "label"),
}


def in_image(*command: str) -> str:
    result = docker("run", "--rm", "--read-only", "--user", UID, "--entrypoint", command[0], CUDA_IMAGE,
                    *command[1:], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_example(example: str, device: str) -> str:
    artifact = GPU_EXAMPLES[example][0]
    directory = APP_DIR / "examples" / example
    pin = (directory / f"{artifact}.sha256").read_text().split()[0]
    return docker("run", "-d", "--read-only", "--user", UID, "-v", f"{directory}:/models:ro", "-e", "MODEL_NAME=m",
                  "-e", "MODEL_WORKERS=1", "-e", f"MODEL_PATH=/models/{artifact}", "-e", f"MODEL_SHA256={pin}",
                  "-e", f"MODEL_DEVICE={device}", CUDA_IMAGE).stdout.strip()


def test_the_image_keeps_the_cpu_images_contract() -> None:
    inspected: dict[str, Any] = json.loads(docker("image", "inspect", CUDA_IMAGE).stdout)[0]
    print(f"\n{CUDA_IMAGE}: {inspected['Size'] // 1_000_000} MB")  # make cuda-image shows it (pytest -s)
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "model_server"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert "MODEL_PATH=/app/model.pkl" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.title"] == "model-server"


def test_the_dependency_set_imports_with_cuda_compiled_in() -> None:
    report = json.loads(in_image("python", "-c", """
import json, sys
import numpy, sklearn, scipy, joblib, skops, orjson, httptools, uvloop, prometheus_client, pydantic
import lightgbm, xgboost, onnxruntime
import model_server.app, model_server.runtimes.xgboost, model_server.runtimes.onnx, model_server.runtimes.lightgbm
print(json.dumps({"python": sys.version_info[:2], "xgboost": xgboost.__version__,
                  "xgboost_cuda": xgboost.build_info().get("USE_CUDA"), "onnxruntime": onnxruntime.__version__,
                  "onnxruntime_cuda": onnxruntime.cuda_version, "providers": onnxruntime.get_available_providers()}))
"""))
    assert report["python"] == [3, 13]
    assert report["xgboost_cuda"] is True, report
    assert report["onnxruntime_cuda"].startswith("13."), report
    assert "CUDAExecutionProvider" in report["providers"], report


def test_every_library_the_cuda_provider_loads_is_in_the_image_but_the_driver() -> None:
    """ldd resolves with the image's LD_LIBRARY_PATH; only the driver is missing, as on a node before the
    NVIDIA container toolkit mounts it. (A provider that cannot load makes ONNX Runtime fall back to the
    CPU: the server would then refuse MODEL_DEVICE=cuda on a GPU node.)"""
    libraries = [f"{SITE_PACKAGES}/onnxruntime/capi/libonnxruntime_providers_cuda.so",
                 f"{SITE_PACKAGES}/xgboost/lib/libxgboost.so"]
    script = (f'for f in "$@" {SITE_PACKAGES}/nvidia/*/lib/*.so.*; do '
              'ldd "$f" | grep "not found" | while read -r lib rest; do echo "$f $lib"; done; done')
    output = in_image("sh", "-c", script, "sh", *libraries)
    missing = {line.split()[1] for line in output.splitlines()}
    assert missing == {"libcuda.so.1"}, output


@pytest.mark.parametrize("example", list(GPU_EXAMPLES))
def test_cuda_refuses_to_start_without_a_gpu(example: str) -> None:
    name = run_example(example, "cuda")
    try:
        assert docker("wait", name, timeout=120).stdout.strip() == "1"
        stderr = docker("logs", name).stderr
        assert "refusing to start: MODEL_DEVICE=cuda, but" in stderr and NO_GPU in stderr, stderr
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(params=list(GPU_EXAMPLES))
def served_on_auto(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    name = run_example(request.param, "auto")
    try:
        wait_ready(container_address(name))
        yield request.param, name
    finally:
        docker("rm", "-f", name, check=False)


def test_auto_serves_on_the_cpu_and_says_why(served_on_auto: tuple[str, str]) -> None:
    example, name = served_on_auto
    address = container_address(name)
    status, metadata = http_json(address, "GET", "/v2/models/m")
    assert status == 200 and metadata["parameters"]["device"] == "cpu", metadata  # type: ignore[index]
    status, answer = http_json(address, "POST", "/v2/models/m/infer", GPU_EXAMPLES[example][1])
    output = next(item for item in answer["outputs"] if item["name"] == GPU_EXAMPLES[example][2])  # type: ignore[index]
    assert (status, output["data"]) == (200, [0, 2]), answer
    logs = docker("logs", name)
    loaded = next(json.loads(line) for line in logs.stdout.splitlines() if '"model_loaded"' in line)
    assert loaded["device"] == "cpu" and NO_GPU in loaded["device_reason"], loaded
    assert "telemetry" not in logs.stdout + logs.stderr
