"""The stack's outputs: what operators, CI (the smoke test) and other stacks read after `pulumi up`."""

from __future__ import annotations

import pulumi

from infra.program.foundation import Foundation
from infra.program.observability import Observability
from infra.program.platform import Platform
from infra.program.workload import Workload
from infra.settings import StackSettings


def export(settings: StackSettings, foundation: Foundation, platform: Platform, observability: Observability,
           workload: Workload) -> None:
    network = foundation.network
    outputs: dict[str, pulumi.Input[object]] = {
        "vpcId": network.vpc_id,
        "privateSubnetIds": network.private_subnet_ids,
        "publicSubnetIds": network.public_subnet_ids,
        "clusterName": foundation.cluster.name,
        "clusterEndpoint": foundation.endpoint,
        "kubeconfig": foundation.kubeconfig,
        "ecrRepositoryUrl": workload.ecr_repository_url,
        "nodePools": node_pools(settings, foundation),
        "modelUrl": workload.url,
        "modelName": settings.model_service.name,
        "imageRef": workload.image_ref,
        "ingressClass": platform.ingress_class,
        **observability.outputs,
    }
    if settings.karpenter:
        system = settings.system_node_group
        outputs["systemPool"] = {"pool": settings.system_pool,
                                 "nodeGroupName": foundation.node_groups[settings.system_pool].node_group_name,
                                 "instanceTypes": list(system.instance_types), "size": system.size}
    for name, value in outputs.items():
        pulumi.export(name, value)


def node_pools(settings: StackSettings, foundation: Foundation) -> dict[str, dict[str, pulumi.Input[object]]]:
    """Each workload pool: its Karpenter NodePool and limits, or its managed node group and sizes."""
    if settings.karpenter:
        return {pool_name: {
            "nodePool": pool_name,
            **({"instanceCategories": list(pool.instance_categories)} if pool.instance_categories else {}),
            **({"instanceFamilies": list(pool.instance_families)} if pool.instance_families else {}),
            **({"instanceTypes": list(pool.instance_types)} if pool.instance_types else {}),
            "gpu": pool.gpu,
            "capacityType": pool.capacity_type,
            "limits": pool.limits.model_dump(by_alias=True, exclude_none=True) if pool.limits else {},
        } for pool_name, pool in settings.node_pools.items()}
    return {pool_name: {
        "nodeGroupName": foundation.node_groups[pool_name].node_group_name,
        "instanceTypes": list(pool.instance_types),
        "gpu": pool.gpu,
        "capacityType": pool.capacity_type,
        "minSize": pool.min_size,
        "maxSize": pool.max_size,
    } for pool_name, pool in settings.node_pools.items()}
