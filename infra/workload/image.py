"""ModelImage: the model server's image for the model's device, built from app/ around the stack's
model artifact and pushed to ECR (what the image promises its runtime, user, port and health
endpoints, is in contract.py).

A CPU pool gets the CPU image (app/Dockerfile: the CPU builds of every runtime, Python 3.11); a GPU
pool the CUDA image (app/Dockerfile.cuda: the CUDA builds, which need Python 3.12 or later). Both
take the artifact as the build argument MODEL_FILE and set MODEL_PATH to it. The tag follows what
the image is built from (build_context.py), so an unchanged app/ gives an unchanged tag and no
rollout. The Deployment pulls by digest. pulumi-docker does not build during `pulumi preview`
(build_on_preview=False), which keeps reviewers' previews fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from infra.settings import PROJECT_DIR
from infra.settings.artifact import Device, ModelArtifact
from infra.settings.build_context import APP_DIR, content_tag

DOCKERFILES: dict[Device, str] = {"cpu": "Dockerfile", "cuda": "Dockerfile.cuda"}
PLATFORM = "linux/amd64"  # node pools run x86_64 AMIs


@dataclass(frozen=True)
class ImageBuild:
    """How the image for one model on one device is built, and the tag that names it."""

    dockerfile: str  # under app/
    args: dict[str, str]
    tag: str

    @classmethod
    def of(cls, model: ModelArtifact, device: Device) -> ImageBuild:
        dockerfile, args = DOCKERFILES[device], {"MODEL_FILE": model.file}
        return cls(dockerfile=dockerfile, args=args, tag=content_tag(model.file, dockerfile, args))


@dataclass(frozen=True)
class ModelImageArgs:
    build: ImageBuild
    repository_url: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    provider: aws.Provider


class ModelImage(pulumi.ComponentResource):
    image_ref: pulumi.Output[str]

    def __init__(self, name: str, args: ModelImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:registry:ModelImage", name, None, opts)
        credentials = aws.ecr.get_authorization_token_output(
            registry_id=args.registry_id, opts=pulumi.InvokeOutputOptions(provider=args.provider))
        build = args.build
        image = docker.Image(
            f"{name}-model-server",
            image_name=pulumi.Output.concat(args.repository_url, ":", build.tag),
            build={
                # Relative to the project (Pulumi runs the program there): the same in every checkout.
                "context": APP_DIR.relative_to(PROJECT_DIR).as_posix(),
                "dockerfile": (APP_DIR / build.dockerfile).relative_to(PROJECT_DIR).as_posix(),
                "platform": PLATFORM,
                "args": {"VERSION": build.tag, **build.args},
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
