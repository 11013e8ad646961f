"""The image tag follows app/'s content; the model's pin must match the artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.model_image import APP_DIR, AppArtifact, AppArtifactError, content_tag, context_files
from infra.synth import Synthesis


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
    assert not {name for name in names if name.endswith(".pyc") or name.startswith(("train", "Dockerfile"))}


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
    # The registry credentials (from aws.ecr.get_authorization_token) are a secret as a whole.
    assert image["registry"] == "[secret]"


def test_dockerfile_user_is_the_one_the_cluster_runs_as() -> None:
    from infra.model_image import SERVER_UID

    assert f"USER {SERVER_UID}:{SERVER_UID}" in (APP_DIR / "Dockerfile").read_text()
