"""ModelImage: the model server's image, built from app/ and pushed to ECR (what the image
promises its runtime, user, port and health endpoints, is in contract.py).

The tag is a hash of exactly the files Docker sends as the build context (app/.dockerignore
decides), so an unchanged app/ gives an unchanged tag and no rollout. The Deployment pulls
by digest. pulumi-docker does not build during `pulumi preview` (build_on_preview=False),
which keeps reviewers' previews fast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker
from docker.utils.build import exclude_paths

from infra.settings import PROJECT_DIR

APP_DIR = PROJECT_DIR / "app"
MODEL_FILE = "model.pkl"
DOCKERFILE = "Dockerfile"
PLATFORM = "linux/amd64"  # node pools run x86_64 AMIs


class AppArtifactError(ValueError):
    """app/ cannot be deployed as it is."""


def context_files(app_dir: Path = APP_DIR) -> list[Path]:
    """The files `docker build app/` sends, by Docker's own .dockerignore rules (docker-py ports
    moby's matcher: `*` stops at '/', `**` crosses it, the last matching pattern wins, `!`
    re-includes). The Dockerfile and .dockerignore are always sent, and shape the image too."""
    lines = (app_dir / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    included = exclude_paths(str(app_dir), patterns, dockerfile=DOCKERFILE)
    return sorted(app_dir / relative for relative in included if (app_dir / relative).is_file())


def content_tag(app_dir: Path = APP_DIR) -> str:
    digest = hashlib.sha256()
    for path in context_files(app_dir):
        digest.update(path.relative_to(app_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"app-{digest.hexdigest()[:20]}"


def model_sha256(app_dir: Path = APP_DIR) -> str:
    """The model artifact's sha256, checked against the pin committed beside it."""
    model = app_dir / MODEL_FILE
    pin = app_dir / f"{MODEL_FILE}.sha256"
    if not model.is_file():
        raise AppArtifactError(f"{model} is missing: train one with `make model` or copy yours there")
    actual = hashlib.sha256(model.read_bytes()).hexdigest()
    if not pin.is_file() or pin.read_text().split()[:1] != [actual]:
        raise AppArtifactError(
            f"{pin} does not pin {model.name} (its sha256 is {actual}): if this model is the one to serve, "
            f"run `cd app && sha256sum {MODEL_FILE} > {MODEL_FILE}.sha256`")
    return actual


@dataclass(frozen=True)
class AppArtifact:
    """What gets deployed from app/, checked before any resource is declared."""

    tag: str
    model_sha256: str

    @classmethod
    def inspect(cls, app_dir: Path = APP_DIR) -> AppArtifact:
        return cls(tag=content_tag(app_dir), model_sha256=model_sha256(app_dir))


@dataclass(frozen=True)
class ModelImageArgs:
    artifact: AppArtifact
    repository_url: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    provider: aws.Provider


class ModelImage(pulumi.ComponentResource):
    image_ref: pulumi.Output[str]

    def __init__(self, name: str, args: ModelImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:registry:ModelImage", name, None, opts)
        credentials = aws.ecr.get_authorization_token_output(
            registry_id=args.registry_id, opts=pulumi.InvokeOutputOptions(provider=args.provider))
        image = docker.Image(
            f"{name}-model-server",
            image_name=pulumi.Output.concat(args.repository_url, ":", args.artifact.tag),
            build={
                # Relative to the project (Pulumi runs the program there): the same in every checkout.
                "context": APP_DIR.relative_to(PROJECT_DIR).as_posix(),
                "dockerfile": (APP_DIR / DOCKERFILE).relative_to(PROJECT_DIR).as_posix(),
                "platform": PLATFORM,
                "args": {"VERSION": args.artifact.tag},
            },
            registry={
                "server": args.repository_url,
                "username": credentials.user_name,
                "password": pulumi.Output.secret(credentials.password),
            },
            build_on_preview=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # repo@sha256:...: what the cluster runs cannot change under a tag.
        self.image_ref = image.repo_digest
        self.register_outputs({"imageRef": self.image_ref})
