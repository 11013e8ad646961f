"""The image tag follows app/'s content; the model's pin must match the artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.workload.image import APP_DIR, AppArtifact, AppArtifactError, content_tag, context_files
from review.records import Synthesis


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_tag_is_stable_for_unchanged_content(app_copy: Path) -> None:
    assert content_tag(app_copy) == content_tag(app_copy) == content_tag(APP_DIR)


def test_tag_changes_when_a_file_in_the_image_changes(app_copy: Path) -> None:
    before = content_tag(app_copy)
    server = app_copy / "model_server" / "app.py"
    server.write_text(server.read_text() + "\n# changed\n")
    assert content_tag(app_copy) != before


def test_tag_ignores_files_the_build_context_leaves_out(app_copy: Path) -> None:
    before = content_tag(app_copy)
    (app_copy / "train.py").write_text("# not in the image\n")
    (app_copy / "model_server" / "__pycache__").mkdir()
    (app_copy / "model_server" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert content_tag(app_copy) == before


def test_build_context_is_what_the_dockerfile_copies() -> None:
    names = {path.relative_to(APP_DIR).as_posix() for path in context_files()}
    assert {"requirements.txt", "model.pkl", "model_server/__main__.py"} <= names
    assert not {name for name in names if name.endswith(".pyc") or name.startswith("train")}


def test_tag_changes_when_the_dockerfile_changes(app_copy: Path) -> None:
    """Docker always sends the Dockerfile, and it shapes the image: an unchanged tag would make the
    push to the immutable ECR tag fail."""
    before = content_tag(app_copy)
    dockerfile = app_copy / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nLABEL changed=true\n")
    assert content_tag(app_copy) != before


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


def test_a_model_that_does_not_match_its_pin_stops_the_program(app_copy: Path) -> None:
    (app_copy / "model.pkl").write_bytes(b"another model")
    with pytest.raises(AppArtifactError, match=r"does not pin model\.pkl"):
        AppArtifact.inspect(app_copy)


def test_a_missing_model_stops_the_program(app_copy: Path) -> None:
    (app_copy / "model.pkl").unlink()
    with pytest.raises(AppArtifactError, match="make model"):
        AppArtifact.inspect(app_copy)


def test_image_is_built_for_amd64_from_app_without_building_on_preview(stack_synthesis: Synthesis) -> None:
    image = stack_synthesis.one("docker:index/image:Image").inputs
    assert image["build"]["platform"] == "linux/amd64"
    assert (image["build"]["context"], image["build"]["dockerfile"]) == ("app", "app/Dockerfile")
    assert image["buildOnPreview"] is False
    assert image["imageName"] == f"{stack_synthesis.outputs['ecrRepositoryUrl']}:{content_tag()}"
    # The registry password (from aws.ecr.get_authorization_token) is a secret.
    assert image["registry"]["password"] == "[secret]"
    assert image["registry"]["server"] == stack_synthesis.outputs["ecrRepositoryUrl"]


def test_dockerfile_user_is_the_one_the_cluster_runs_as() -> None:
    from infra.workload.contract import SERVER_UID

    assert f"USER {SERVER_UID}:{SERVER_UID}" in (APP_DIR / "Dockerfile").read_text()
