"""`python -m delivery.stack_model`: what a stack deploys, for the image and gate steps of `make gate`
and the deploy workflow, and what was deployed at a commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from delivery import stack_model
from infra.settings import PROJECT_DIR


def answer(*argv: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "delivery.stack_model", *argv], cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout.strip(), result.stderr


def test_a_committed_stack_deploys_the_default_model_on_the_cpu_image() -> None:
    assert answer("dev", "model")[:2] == (0, "model.pkl")
    assert answer("dev", "dockerfile")[:2] == (0, "Dockerfile")


def test_a_gpu_stack_gets_the_cuda_dockerfile(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              ) -> None:
    from review import stack_files

    real = stack_files.stack_config
    monkeypatch.setattr(stack_model, "stack_config", lambda stack: real(stack, {"modelService": {
        "model": "examples/onnx-mlp/model.onnx", "pool": "gpu", "gpus": 1, "replicas": 1, "minReplicas": 1}}))
    assert stack_model.main(["dev", "dockerfile"]) == 0
    assert stack_model.main(["dev", "model"]) == 0
    assert capsys.readouterr().out.split() == ["Dockerfile.cuda", "examples/onnx-mlp/model.onnx"]


def test_an_invalid_stack_is_refused_with_its_problems(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from review import stack_files

    real = stack_files.stack_config
    monkeypatch.setattr(stack_model, "stack_config",
                        lambda stack: real(stack, {"modelService": {"model": "examples/missing.ubj"}}))
    assert stack_model.main(["dev", "model"]) == 2
    assert "modelService.model: app/examples/missing.ubj does not exist" in capsys.readouterr().err


def test_the_model_deployed_at_a_commit_is_the_one_its_stack_file_named(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  model-serving:modelService:\n"
                                              "    model: examples/xgboost/model.ubj\n")
    (tmp_path / "Pulumi.staging.yaml").write_text("config:\n  model-serving:modelService:\n    replicas: 2\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "xgboost")
    monkeypatch.setattr(stack_model, "PROJECT_DIR", tmp_path)
    assert stack_model.deployed_model("dev", "HEAD") == "examples/xgboost/model.ubj"
    # A stack file of before modelService.model, and a commit without one, deployed the default.
    assert stack_model.deployed_model("staging", "HEAD") == "model.pkl"
    assert stack_model.deployed_model("prod", "HEAD") == "model.pkl"
    assert stack_model.deployed_model("dev", "no-such-ref") == "model.pkl"
