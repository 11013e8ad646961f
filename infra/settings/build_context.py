"""What `docker build app/` sends, and the image tag that follows it (no Pulumi here: the settings
check that the model is in the context, and the image takes its tag).

The tag is a hash of the files one image is built from: the build context (app/.dockerignore
decides), less the pinned model artifacts that image does not copy, plus its build arguments. So an
unchanged app/ gives an unchanged tag and no rollout, and retraining one example never rebuilds a
stack that serves another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from docker.utils.build import exclude_paths

APP_DIR = Path(__file__).resolve().parent.parent.parent / "app"


def context_files(app_dir: Path = APP_DIR, dockerfile: str = "Dockerfile") -> list[Path]:
    """The files `docker build -f <dockerfile> app/` sends, by Docker's own .dockerignore rules
    (docker-py ports moby's matcher: `*` stops at '/', `**` crosses it, the last matching pattern
    wins, `!` re-includes). The Dockerfile and .dockerignore are always sent, and shape the image too."""
    lines = (app_dir / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    included = exclude_paths(str(app_dir), patterns, dockerfile=dockerfile)
    return sorted(app_dir / relative for relative in included if (app_dir / relative).is_file())


def _is_pinned_artifact(path: Path) -> bool:
    # Every deployable model has its pin beside it (artifact.py): that marks it as one.
    return path.with_name(f"{path.name}.sha256").is_file()


def content_tag(model_file: str, dockerfile: str, build_args: Mapping[str, str], app_dir: Path = APP_DIR) -> str:
    """The tag of the image built with `dockerfile` and `build_args` around app/<model_file>."""
    model = app_dir / model_file
    digest = hashlib.sha256()
    for path in context_files(app_dir, dockerfile):
        if path != model and _is_pinned_artifact(path):
            continue
        digest.update(path.relative_to(app_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name, value in sorted(build_args.items()):
        digest.update(f"--build-arg {name}={value}\0".encode())
    return f"app-{digest.hexdigest()[:20]}"
