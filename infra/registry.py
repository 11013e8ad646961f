"""Registry: the ECR repository the model server's image is pushed to, and how its images are scanned.

Scanning is configured at the registry (account and region), not on the repository: AWS deprecated
repository-level scan-on-push. `ecrScanning: basic` scans OS packages on push; `enhanced` (Amazon
Inspector) also scans the image's Python packages, and rescans as new vulnerabilities appear.
The registry holds one scanning configuration, so two stacks in one account and region share it:
the last `pulumi up` wins (its rules name only this stack's repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.identity import StackIdentity

SCAN_TYPES = {"basic": "BASIC", "enhanced": "ENHANCED"}
# Basic scanning can only scan on push; Inspector rescans continuously.
SCAN_FREQUENCIES = {"basic": "SCAN_ON_PUSH", "enhanced": "CONTINUOUS_SCAN"}


@dataclass(frozen=True)
class RegistryArgs:
    identity: StackIdentity
    keep_images: int  # tagged images kept; older ones expire
    scanning: str  # basic or enhanced


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
        identity = args.identity
        repository = aws.ecr.Repository(
            f"{name}-model-server",
            name=f"{identity.name}/model-server",
            # A tag, once pushed, always means the same image: deployments are reproducible.
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=False,
            tags=identity.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=identity.production),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-model-server",
            repository=repository.name,
            policy=lifecycle_policy(args.keep_images),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.ecr.RegistryScanningConfiguration(
            f"{name}-scanning",
            scan_type=SCAN_TYPES[args.scanning],
            rules=[{"scan_frequency": SCAN_FREQUENCIES[args.scanning],
                    "repository_filters": [{"filter": repository.name, "filter_type": "WILDCARD"}]}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.repository_url = repository.repository_url
        self.registry_id = repository.registry_id
        self.register_outputs({"repositoryUrl": self.repository_url})
