"""The whole stack, in order: settings → network → cluster → node pools → add-ons → registry."""

import pulumi
import pulumi_aws as aws

from infra.addons import AFTER_NODES, BEFORE_NODES, EksAddons, EksAddonsArgs
from infra.cluster import Cluster, ClusterArgs
from infra.network import Network, NetworkArgs
from infra.node_pools import NodePool, NodePoolArgs
from infra.registry import Registry, RegistryArgs
from infra.settings import settings_from_runtime

settings = settings_from_runtime()  # raises, listing every config problem, before any resource exists

# Every AWS resource uses this explicit provider; the stack files disable the default one.
aws_provider = aws.Provider("aws", region=settings.region)
uses_aws = pulumi.ResourceOptions(providers=[aws_provider])

network = Network("network", NetworkArgs(settings=settings, provider=aws_provider), opts=uses_aws)
cluster = Cluster("cluster", ClusterArgs(settings=settings, network=network, provider=aws_provider), opts=uses_aws)
networking_addons = EksAddons(
    "networking", EksAddonsArgs(settings=settings, cluster_name=cluster.name, addon_names=BEFORE_NODES),
    opts=uses_aws)
node_pools = {
    pool_name: NodePool(
        f"pool-{pool_name}",
        NodePoolArgs(settings=settings, pool_name=pool_name, pool=pool, cluster_name=cluster.name,
                     node_role_arn=cluster.node_role_arn, subnet_ids=network.private_subnet_ids,
                     wait_for=[networking_addons]),
        opts=uses_aws,
    )
    for pool_name, pool in settings.node_pools.items()
}
EksAddons(
    "core", EksAddonsArgs(settings=settings, cluster_name=cluster.name, addon_names=AFTER_NODES,
                          wait_for=list(node_pools.values())),
    opts=uses_aws)
registry = Registry("registry", RegistryArgs(settings=settings), opts=uses_aws)

pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("ecrRepositoryUrl", registry.repository_url)
pulumi.export("nodePools", {
    pool_name: {
        "nodeGroupName": node_pools[pool_name].node_group_name,
        "instanceTypes": list(pool.instance_types),
        "gpu": pool.gpu,
        "capacityType": pool.capacity_type,
        "minSize": pool.min_size,
        "maxSize": pool.max_size,
    }
    for pool_name, pool in settings.node_pools.items()
})
