"""The AWS foundation: the explicit AWS provider, the network, the EKS cluster with its add-ons
and node groups, and the Kubernetes provider for everything installed into the cluster.

The node groups: every workload pool with cluster-autoscaler; with Karpenter, the system pool only
(Karpenter's pools are declared with its controller, in the platform layer)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.addons import AFTER_NODES, BEFORE_NODES, EksAddons, EksAddonsArgs
from infra.cluster import Cluster, ClusterArgs
from infra.compute.karpenter import discovery_tags
from infra.compute.node_groups import NodeGroupSpec, NodePool, NodePoolArgs
from infra.network import Network, NetworkArgs
from infra.settings import StackSettings


@dataclass(frozen=True)
class ClusterRef:
    """What every layer above the foundation knows of the cluster."""

    name: pulumi.Output[str]
    account_id: str
    kubernetes_version: str
    system_pool: str  # the pool that always has nodes: where add-ons and controllers run
    has_gpu_pool: bool
    karpenter: bool  # Karpenter provisions the workload pools (else cluster-autoscaler scales node groups)
    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]  # the cluster security group, which every node carries
    aws_provider: aws.Provider
    # Every AWS resource uses the explicit provider (the stack files disable the default one); the
    # Kubernetes layer also talks to this cluster only, through the provider built from its kubeconfig.
    on_aws: pulumi.ResourceOptions
    on_cluster: pulumi.ResourceOptions
    # Node groups and the add-ons that run on them: what has to exist before pods can.
    nodes_ready: tuple[pulumi.Resource, ...]
    # For tooling that talks to the cluster during `pulumi up` (the release wait); a secret.
    kubeconfig: pulumi.Output[str]


@dataclass(frozen=True)
class Foundation:
    cluster: ClusterRef
    network: Network
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    node_groups: dict[str, NodePool]


def build(settings: StackSettings) -> Foundation:
    identity = settings.identity
    aws_provider = aws.Provider("aws", region=settings.region)
    on_aws = pulumi.ResourceOptions(providers=[aws_provider])
    network = Network("network", NetworkArgs(
        identity=identity, vpc_cidr=settings.vpc_cidr, subnet_cidrs=settings.subnet_cidrs,
        nat_gateways=settings.nat_gateways, availability_zones=settings.availability_zones, provider=aws_provider,
        # Karpenter launches its nodes into the subnets carrying the discovery tag.
        private_subnet_tags=discovery_tags(identity.name) if settings.karpenter else {}),
        opts=on_aws)
    cluster = Cluster("cluster", ClusterArgs(
        identity=identity, kubernetes_version=settings.kubernetes_version,
        endpoint_public_access_cidrs=settings.endpoint_public_access_cidrs,
        admin_principal_arns=settings.admin_principal_arns,
        control_plane_log_retention_days=settings.control_plane_log_retention_days, network=network,
        provider=aws_provider), opts=on_aws)
    networking_addons = EksAddons("networking", EksAddonsArgs(
        identity=identity, kubernetes_version=settings.kubernetes_version, cluster_name=cluster.name,
        addon_names=BEFORE_NODES), opts=on_aws)
    specs = (
        {settings.system_pool: NodeGroupSpec.of_system_pool(settings.system_pool, settings.system_node_group)}
        if settings.karpenter else
        {name: NodeGroupSpec.of_pool(name, pool) for name, pool in settings.node_pools.items()})
    node_groups = {
        pool_name: NodePool(f"pool-{pool_name}", NodePoolArgs(
            identity=identity, pool_name=pool_name, spec=spec, cluster_name=cluster.name,
            node_role_arn=cluster.node_role_arn, subnet_ids=network.private_subnet_ids,
            wait_for=[networking_addons]), opts=on_aws)
        for pool_name, spec in specs.items()
    }
    core_addons = EksAddons("core", EksAddonsArgs(
        identity=identity, kubernetes_version=settings.kubernetes_version, cluster_name=cluster.name,
        addon_names=AFTER_NODES, wait_for=list(node_groups.values())), opts=on_aws)
    return Foundation(
        cluster=ClusterRef(
            name=cluster.name, account_id=cluster.account_id, kubernetes_version=settings.kubernetes_version,
            system_pool=settings.system_pool, has_gpu_pool=settings.has_gpu_pool, karpenter=settings.karpenter,
            endpoint=cluster.endpoint, security_group_id=cluster.security_group_id, aws_provider=aws_provider,
            on_aws=on_aws,
            on_cluster=pulumi.ResourceOptions(providers=[aws_provider, cluster.kubernetes_provider]),
            nodes_ready=(*node_groups.values(), core_addons), kubeconfig=cluster.kubeconfig),
        network=network, endpoint=cluster.endpoint, kubeconfig=cluster.kubeconfig, node_groups=node_groups)
