"""The image, built and run for real with Docker.

No registry is reachable here, so the base image is built offline: a Debian bookworm
root filesystem from debootstrap, imported into Docker (tests/support/offline_base.py), and
passed as BASE_IMAGE. Real users build on the Dockerfile's default, python:3.11-slim-bookworm.

On a machine without Docker these tests skip, saying why; CI sets REQUIRE_DOCKER=1 so
that there they fail instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.offline_base import BASES, OfflineBaseError, build_offline_base
from tests.support.server import APP_DIR
from tests.support.shutdown import terminate_under_load

BASE_IMAGE = BASES["bookworm"]
IMAGE = "model-serving-test/model-server:test"
UID = "10001"
# 415 MB with scikit-learn alone; the CPU builds of XGBoost, LightGBM and ONNX Runtime (its
# library alone is 58 MB) and LightGBM's libgomp1 bring it to about 494 MB on the offline base.
MAX_IMAGE_BYTES = 520 * 1000 * 1000


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"the Docker engine is not reachable ({probe.stderr.strip().splitlines()[-1:]})"
    return None


@pytest.fixture(scope="module", autouse=True)
def require_docker() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(f"container tests need Docker: {problem}")


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def image() -> str:
    try:
        build_offline_base("bookworm", BASE_IMAGE)
    except OfflineBaseError as error:
        pytest.fail(str(error))
    result = docker("build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "VERSION=test",
                    "-t", IMAGE, str(APP_DIR), timeout=1200, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return IMAGE


def model_sha256() -> str:
    return hashlib.sha256((APP_DIR / "model.pkl").read_bytes()).hexdigest()


def container_address(container: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).stdout.strip()


def run_container(image: str, *env: str) -> str:
    arguments = ["run", "-d", "--read-only", "--user", UID, "-e", "MODEL_NAME=iris", "-e", "MODEL_WORKERS=2",
                 "-e", "MODEL_DRAIN_S=1"]
    for variable in env:
        arguments += ["-e", variable]
    return docker(*arguments, image).stdout.strip()


def wait_ready(address: str, timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(address, 8080, timeout=2)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"container at {address} not ready within {timeout} s")


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    name = run_container(image, f"MODEL_SHA256={model_sha256()}")
    try:
        wait_ready(container_address(name))
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def http_json(address: str, method: str, path: str, body: dict[str, object] | None = None) -> tuple[int, object]:
    import http.client

    connection = http.client.HTTPConnection(address, 8080, timeout=10)
    connection.request(method, path, json.dumps(body) if body else None, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_image_is_small_non_root_and_labelled(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]
    assert config["Size"] < MAX_IMAGE_BYTES, f"{config['Size'] / 1e6:.0f} MB"
    assert config["Config"]["User"] == f"{UID}:{UID}"
    assert config["Config"]["Entrypoint"] == ["python", "-m", "model_server"]
    assert config["Config"]["Labels"]["org.opencontainers.image.version"] == "test"
    assert config["Config"]["Healthcheck"]["Test"][0] == "CMD"


def test_health_metadata_and_inference_on_a_read_only_root(container: str) -> None:
    address = container_address(container)
    assert http_json(address, "GET", "/v2/health/live") == (200, {"live": True})
    status, metadata = http_json(address, "GET", "/v2/models/iris")
    assert status == 200 and metadata["inputs"][0]["shape"] == [-1, 4]  # type: ignore[index]
    status, answer = http_json(address, "POST", "/v2/models/iris/infer", {"inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]})
    assert status == 200
    assert answer["outputs"][0]["data"] == [0, 2]  # type: ignore[index]
    assert docker("exec", container, "id", "-u").stdout.strip() == UID
    assert docker("exec", container, "touch", "/app/x", check=False).returncode != 0  # the root is read-only


def test_healthcheck_command_passes(image: str, container: str) -> None:
    command = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["Healthcheck"]["Test"][1:]
    assert docker("exec", container, *command, check=False).returncode == 0


def serves_iris(container: str) -> str:
    """The container's address, once it is ready and classifies one iris of each end of the range."""
    address = container_address(container)
    wait_ready(address)
    status, answer = http_json(address, "POST", "/v1/models/iris:predict",
                               {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert (status, answer) == (200, {"predictions": [0, 2]})
    return address


@pytest.mark.parametrize(("example", "artifact"), [("lightgbm", "model.txt"), ("onnx", "model.onnx")])
def test_a_mounted_example_of_another_runtime_is_served(image: str, example: str, artifact: str) -> None:
    """LightGBM needs the image's libgomp1; ONNX Runtime its own library, with its telemetry off."""
    directory = APP_DIR / "examples" / example
    pin = (directory / f"{artifact}.sha256").read_text().split()[0]
    name = docker("run", "-d", "--read-only", "--user", UID, "-v", f"{directory}:/models:ro", "-e", "MODEL_NAME=iris",
                  "-e", "MODEL_WORKERS=1", "-e", f"MODEL_PATH=/models/{artifact}", "-e", f"MODEL_SHA256={pin}",
                  image).stdout.strip()
    try:
        address = serves_iris(name)
        status, metadata = http_json(address, "GET", "/v2/models/iris")
        assert status == 200 and metadata["parameters"] == {"runtime": example, "device": "cpu"}  # type: ignore[index]
        logs = docker("logs", name)
        assert "telemetry" not in logs.stdout + logs.stderr
    finally:
        docker("rm", "-f", name, check=False)


def test_an_image_built_around_another_runtimes_example_serves_it(image: str) -> None:
    """As the program builds it for modelService.model: MODEL_FILE copies the artifact and points
    MODEL_PATH at it; the pod gives only the pin, the format and the device."""
    model = "examples/xgboost/model.ubj"
    built = f"{IMAGE}-xgboost"
    result = docker("build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", f"MODEL_FILE={model}",
                    "-t", built, str(APP_DIR), timeout=1200, check=False)  # the build stage is the image fixture's
    assert result.returncode == 0, result.stderr[-4000:]
    pin = (APP_DIR / f"{model}.sha256").read_text().split()[0]
    name = run_container(built, f"MODEL_SHA256={pin}", "MODEL_FORMAT=xgboost", "MODEL_DEVICE=cpu")
    try:
        serves_iris(name)
        env = json.loads(docker("image", "inspect", built).stdout)[0]["Config"]["Env"]
        assert f"MODEL_PATH=/app/{model}" in env
    finally:
        docker("rm", "-f", name, check=False)
        docker("image", "rm", built, check=False)


def test_wrong_pin_stops_the_container_with_a_clear_message(image: str) -> None:
    name = run_container(image, f"MODEL_SHA256={'0' * 64}")
    try:
        assert docker("wait", name, timeout=60).stdout.strip() == "1"
        assert "refusing to start" in docker("logs", name).stderr
    finally:
        docker("rm", "-f", name, check=False)


def test_sigterm_under_load_loses_no_request(image: str) -> None:
    name = run_container(image, f"MODEL_SHA256={model_sha256()}")
    try:
        address = container_address(name)
        wait_ready(address)

        def wait_exit(timeout: float) -> int | None:
            try:
                return int(docker("wait", name, timeout=timeout).stdout.strip())
            except subprocess.TimeoutExpired:
                return None

        # docker stop's default grace period is 10 s: exiting within it is the requirement.
        report = terminate_under_load(address, 8080, lambda: docker("kill", "--signal", "TERM", name), wait_exit,
                                      lambda: docker("logs", name).stdout, workers=2, grace_s=10)
        lost = {outcome: n for outcome, n in report.outcomes.items() if outcome not in ("ok", "refused")}
        assert lost == {}, report
        assert report.answered_while_draining > 0, report
        assert report.ready_503_after_s is not None, report
        assert report.exit_code == 0, docker("logs", name).stdout[-2000:]
        assert report.exited_after_s < 10
    finally:
        docker("rm", "-f", name, check=False)
