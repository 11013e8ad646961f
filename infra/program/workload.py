"""The model-serving workload: the ECR registry and the image built from app/, the front door
(certificate, WAF), the model service itself and, with a domain of our own, its DNS name."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.compute.karpenter import DO_NOT_DISRUPT
from infra.program.foundation import Foundation
from infra.program.observability import Observability
from infra.program.platform import Platform
from infra.registry import Registry, RegistryArgs
from infra.settings import StackSettings
from infra.workload.dns_name import DnsName, DnsNameArgs
from infra.workload.front_door import FrontDoor, FrontDoorArgs
from infra.workload.image import ImageBuild, ModelImage, ModelImageArgs
from infra.workload.service import ModelService, ModelServiceArgs


@dataclass(frozen=True)
class Workload:
    url: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    ecr_repository_url: pulumi.Output[str]
    # What runs the model: observability watches it.
    resources: tuple[pulumi.Resource, ...]


def build(settings: StackSettings, foundation: Foundation, platform: Platform,
          observability: Observability) -> Workload:
    identity, cluster, model = settings.identity, foundation.cluster, settings.model_service
    artifact, device = settings.model_artifact, settings.model_device
    registry = Registry("registry", RegistryArgs(identity=identity, keep_images=settings.ecr_keep_images,
                                                 scanning=settings.ecr_scanning), opts=cluster.on_aws)
    image = ModelImage("image", ModelImageArgs(
        build=ImageBuild.of(artifact, device), repository_url=registry.repository_url, registry_id=registry.registry_id,
        provider=cluster.aws_provider), opts=cluster.on_aws)
    front_door = FrontDoor("front-door", FrontDoorArgs(identity=identity, endpoint=model,
                                                       provider=cluster.aws_provider), opts=cluster.on_aws)
    model_service = ModelService("model", ModelServiceArgs(
        identity=identity, model=model, observability=settings.observability,
        retain_data_on_destroy=settings.retain_data_on_destroy, kubeconfig=cluster.kubeconfig,
        image_ref=image.image_ref, artifact=artifact, device=device, vpc_cidr=foundation.network.vpc_cidr,
        shared_storage_class=platform.shared_storage_class, ingress_class=platform.ingress_class,
        certificate_arn=front_door.certificate_arn, web_acl_arn=front_door.web_acl_arn,
        access_log_bucket=observability.access_log_bucket,
        canary_pod_annotations=DO_NOT_DISRUPT if cluster.karpenter else {},
        wait_for=[*platform.webhooks_ready, *platform.shared_storage_ready, *platform.release_control_ready]),
        opts=cluster.on_cluster)
    if model.domain is not None and front_door.zone_id is not None:
        DnsName("dns", DnsNameArgs(domain=model.domain, zone_id=front_door.zone_id,
                                   load_balancer_hostname=model_service.load_balancer_hostname,
                                   provider=cluster.aws_provider), opts=cluster.on_aws)
    return Workload(url=model_service.url, image_ref=image.image_ref, ecr_repository_url=registry.repository_url,
                    resources=(model_service,))
