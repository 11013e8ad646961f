"""The image follows the model's device and the tag what the image is built from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.settings.artifact import APP_DIR
from infra.settings.build_context import content_tag, context_files
from review.records import Synthesis

XGBOOST = "examples/xgboost/model.ubj"


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "Dockerfile.cuda").write_text("FROM scratch\n")  # its own helper writes the real one
    return copy


def tag(app_dir: Path, model: str = "model.pkl", dockerfile: str = "Dockerfile") -> str:
    return content_tag(model, dockerfile, {"MODEL_FILE": model}, app_dir)


def test_tag_is_stable_for_unchanged_content(app_copy: Path) -> None:
    assert tag(app_copy) == tag(app_copy) == content_tag("model.pkl", "Dockerfile", {"MODEL_FILE": "model.pkl"})


def test_tag_changes_when_a_file_in_the_image_changes(app_copy: Path) -> None:
    before = tag(app_copy)
    server = app_copy / "model_server" / "app.py"
    server.write_text(server.read_text() + "\n# changed\n")
    assert tag(app_copy) != before


def test_tag_ignores_files_the_build_context_leaves_out(app_copy: Path) -> None:
    before = tag(app_copy)
    (app_copy / "train.py").write_text("# not in the image\n")
    (app_copy / "model_server" / "__pycache__").mkdir()
    (app_copy / "model_server" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (app_copy / "examples" / "xgboost" / "gate.json").write_text("{}")
    assert tag(app_copy) == before


def test_build_context_is_what_the_dockerfiles_copy() -> None:
    names = {path.relative_to(APP_DIR).as_posix() for path in context_files()}
    assert {"requirements.txt", "requirements-cuda.txt", "model.pkl", "model_server/__main__.py", XGBOOST,
            "examples/onnx-mlp/model.onnx"} <= names
    assert not {name for name in names if name.endswith((".pyc", ".sha256", "gate.json")) or name.startswith("train")}


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_tag_changes_when_the_dockerfile_used_changes(app_copy: Path, dockerfile: str) -> None:
    """Docker always sends the Dockerfile, and it shapes the image: an unchanged tag would make the
    push to the immutable ECR tag fail. The other image's Dockerfile is no part of this one."""
    other = {"Dockerfile": "Dockerfile.cuda", "Dockerfile.cuda": "Dockerfile"}[dockerfile]
    before = tag(app_copy, dockerfile=dockerfile)
    (app_copy / other).write_text((app_copy / other).read_text() + "\nLABEL changed=true\n")
    assert tag(app_copy, dockerfile=dockerfile) == before
    (app_copy / dockerfile).write_text((app_copy / dockerfile).read_text() + "\nLABEL changed=true\n")
    assert tag(app_copy, dockerfile=dockerfile) != before


def test_each_image_has_its_own_tag(app_copy: Path) -> None:
    tags = {tag(app_copy), tag(app_copy, XGBOOST), tag(app_copy, XGBOOST, "Dockerfile.cuda")}
    assert len(tags) == 3
    assert content_tag("model.pkl", "Dockerfile", {"MODEL_FILE": "model.pkl", "EXTRA": "1"}, app_copy) != tag(app_copy)


def test_tag_follows_its_own_model_and_no_other(app_copy: Path) -> None:
    """Retraining one example rebuilds only the stacks that serve it."""
    before_default, before_xgboost = tag(app_copy), tag(app_copy, XGBOOST)
    (app_copy / XGBOOST).write_bytes((app_copy / XGBOOST).read_bytes() + b" ")
    assert tag(app_copy) == before_default
    assert tag(app_copy, XGBOOST) != before_xgboost


def context_of(tmp_path: Path, dockerignore: str, files: list[str]) -> set[str]:
    (tmp_path / ".dockerignore").write_text(dockerignore)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return {path.relative_to(tmp_path).as_posix() for path in context_files(tmp_path)} - {
        ".dockerignore", "Dockerfile"}


@pytest.mark.parametrize(("dockerignore", "sent"), [
    # '*' stops at '/': Docker still sends sub/notes.md (fnmatch's '*' would have dropped it).
    ("*.md\n", {"sub/notes.md", "main.py"}),
    ("**/*.md\n", {"main.py"}),
    ("sub\n!sub/notes.md\n", {"README.md", "sub/notes.md", "main.py"}),
    ("*\n!main.py\n", {"main.py"}),
    ("**/*.md\n!README.md\n", {"README.md", "main.py"}),
])
def test_context_follows_dockers_own_dockerignore_rules(tmp_path: Path, dockerignore: str, sent: set[str]) -> None:
    assert context_of(tmp_path, dockerignore, ["README.md", "sub/notes.md", "main.py"]) == sent


def test_cpu_image_is_built_for_amd64_from_app_without_building_on_preview(stack_synthesis: Synthesis) -> None:
    image = stack_synthesis.one("docker:index/image:Image").inputs
    assert image["build"]["platform"] == "linux/amd64"
    assert (image["build"]["context"], image["build"]["dockerfile"]) == ("app", "app/Dockerfile")
    assert image["build"]["args"] == {"VERSION": tag(APP_DIR), "MODEL_FILE": "model.pkl"}
    assert image["buildOnPreview"] is False
    assert image["imageName"] == f"{stack_synthesis.outputs['ecrRepositoryUrl']}:{tag(APP_DIR)}"
    # The registry password (from aws.ecr.get_authorization_token) is a secret.
    assert image["registry"]["password"] == "[secret]"
    assert image["registry"]["server"] == stack_synthesis.outputs["ecrRepositoryUrl"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_user_and_model_argument_are_what_the_cluster_expects(dockerfile: str) -> None:
    from infra.workload.contract import SERVER_UID

    path = APP_DIR / dockerfile
    if not path.exists():
        pytest.skip(f"app/{dockerfile} is not in this checkout yet")
    text = path.read_text()
    assert f"USER {SERVER_UID}:{SERVER_UID}" in text
    assert "ARG MODEL_FILE=model.pkl" in text
    assert "COPY ${MODEL_FILE} /app/${MODEL_FILE}" in text and "MODEL_PATH=/app/${MODEL_FILE}" in text
