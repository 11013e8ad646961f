"""Registry: the ECR repository the model server's image is pushed to."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.settings import StackSettings


@dataclass(frozen=True)
class RegistryArgs:
    settings: StackSettings


def lifecycle_policy(keep_images: int) -> str:
    """Expire untagged layers after a day and keep only the newest tagged images."""
    return json.dumps({"rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images (left behind by interrupted pushes)",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": 1},
            "action": {"type": "expire"},
        },
        {
            # A rule matching "any" tag status must have the lowest priority
            # (https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html).
            "rulePriority": 2,
            "description": f"Keep the newest {keep_images} images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
            "action": {"type": "expire"},
        },
    ]})


class Registry(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    registry_id: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:registry:Registry", name, None, opts)
        settings = args.settings
        repository = aws.ecr.Repository(
            f"{name}-model-server",
            name=f"{settings.name}/model-server",
            # A tag, once pushed, always means the same image: deployments are reproducible.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=False,
            tags=settings.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=settings.production),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-model-server",
            repository=repository.name,
            policy=lifecycle_policy(settings.ecr_keep_images),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = repository.repository_url
        self.registry_id = repository.registry_id
        self.register_outputs({"repositoryUrl": self.repository_url})
