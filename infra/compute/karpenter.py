"""KarpenterPools: the workload pools as Karpenter provisions them, an EC2NodeClass and a NodePool per
entry of `nodePools`.

The EC2NodeClass says how a pool's nodes are built: the pinned AL2023 AMI release (Karpenter picks the
standard or NVIDIA image per instance type), IMDSv2 with one hop, an encrypted gp3 root volume, the
stack's tags, and the subnets and security group found by the discovery tag. One per pool, so each
pool keeps its own root volume size and its `node-pool` tag, as its managed node group's launch
template had them (cost reports keep working after a migration).

The NodePool says which nodes a pool may have and how they go: the pool's labels and taint (the same
as a managed node group's, infra/compute/placement.py), its instance types or families, spot with
on-demand fallback, its limits, and disruption: consolidation, expiry, a budget
(https://karpenter.sh/v1.14/concepts/nodepools/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.placement import GPU_RESOURCE, GPU_TAINT, ROOT_DEVICE, node_labels
from infra.identity import StackIdentity
from infra.settings import NodePoolSettings

# Karpenter finds a node class's subnets and security groups by this tag, valued with the cluster's name.
DISCOVERY_TAG = "karpenter.sh/discovery"
NODE_CLASS_API = ("karpenter.k8s.aws", "v1", "EC2NodeClass")
NODE_POOL_API = ("karpenter.sh", "v1", "NodePool")
# Karpenter prefers spot wherever a pool allows both, and falls back to on-demand when no spot
# offering fits (https://karpenter.sh/v1.14/concepts/scheduling/#capacity-type).
CAPACITY_TYPES = {"SPOT": ["spot", "on-demand"], "ON_DEMAND": ["on-demand"]}
# Consolidation never moves a pod carrying this annotation, nor drains its node
# (https://karpenter.sh/v1.14/concepts/disruption/#pod-level-controls).
DO_NOT_DISRUPT = {"karpenter.sh/do-not-disrupt": "true"}


def discovery_tags(cluster_name: str) -> dict[str, str]:
    return {DISCOVERY_TAG: cluster_name}


def node_class_spec(identity: StackIdentity, pool_name: str, pool: NodePoolSettings, role: pulumi.Input[str],
                    ami_alias: str) -> dict[str, Any]:
    selector = [{"tags": discovery_tags(identity.name)}]
    return {
        # Karpenter makes the instance profile for this role itself (its IAM policy allows just that).
        "role": role,
        "amiSelectorTerms": [{"alias": ami_alias}],
        "subnetSelectorTerms": selector,
        "securityGroupSelectorTerms": selector,
        # IMDSv2 only, one hop: pods (one hop further away) cannot take the node's credentials.
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpTokens": "required",
                            "httpPutResponseHopLimit": 1},
        "blockDeviceMappings": [{"deviceName": ROOT_DEVICE, "rootVolume": True, "ebs": {
            "volumeSize": f"{pool.disk_size_gib}Gi", "volumeType": "gp3", "encrypted": True,
            "deleteOnTermination": True}}],
        # Instances, volumes and network interfaces carry them (Karpenter adds its own beside).
        "tags": {**identity.tags, "Name": f"{identity.name}-{pool_name}", "node-pool": pool_name},
    }


def requirements(pool: NodePoolSettings) -> list[dict[str, Any]]:
    """Explicit types, or categories and families (Karpenter admits a type meeting every requirement)."""
    chosen = [{"key": key, "operator": "In", "values": list(values)} for key, values in (
        ("karpenter.k8s.aws/instance-category", pool.instance_categories),
        ("karpenter.k8s.aws/instance-family", pool.instance_families)) if values] or [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)}]
    return [
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": CAPACITY_TYPES[pool.capacity_type]},
        *chosen,
    ]


def limits(pool: NodePoolSettings) -> dict[str, str]:
    """The pool's limits as the NodePool spells them (validated present with Karpenter)."""
    assert pool.limits is not None
    found = {"cpu": str(pool.limits.cpu), "memory": pool.limits.memory,
             GPU_RESOURCE: str(pool.limits.gpus) if pool.limits.gpus is not None else None}
    return {resource: value for resource, value in found.items() if value is not None}


def node_pool_spec(pool_name: str, pool: NodePoolSettings) -> dict[str, Any]:
    disruption = pool.disruption
    template: dict[str, Any] = {
        "nodeClassRef": {"group": NODE_CLASS_API[0], "kind": NODE_CLASS_API[2], "name": pool_name},
        "requirements": requirements(pool),
        "expireAfter": disruption.expire_after,
        "terminationGracePeriod": disruption.termination_grace_period,
    }
    if pool.gpu:
        template["taints"] = [dict(GPU_TAINT)]
    return {
        "template": {"metadata": {"labels": node_labels(pool_name, pool)}, "spec": template},
        "disruption": {"consolidationPolicy": pool.consolidation_policy, "consolidateAfter": pool.consolidate_after,
                       # One budget for every reason it can hold (Underutilized, Empty, Drifted): a share of
                       # the pool's nodes at once. Expiry is forced and no budget holds it back. Budgets cannot
                       # see a release in progress; the canary's do-not-disrupt annotation covers that.
                       "budgets": [{"nodes": f"{disruption.budget_percent}%"}]},
        "limits": limits(pool),
    }


@dataclass(frozen=True)
class KarpenterPoolsArgs:
    identity: StackIdentity
    node_pools: Mapping[str, NodePoolSettings]
    ami_alias: str
    node_role_name: pulumi.Input[str]  # the role with the cluster's EC2_LINUX access entry
    # The CRDs, and the controller that reconciles these objects; children do not inherit depends_on.
    wait_for: Sequence[pulumi.Resource] = ()


class KarpenterPools(pulumi.ComponentResource):
    node_pools: list[pulumi.Resource]

    def __init__(self, name: str, args: KarpenterPoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:nodes:KarpenterPools", name, None, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for))
        self.node_pools = []
        for pool_name, pool in args.node_pools.items():
            group, version, kind = NODE_CLASS_API
            node_class = k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}-class", api_version=f"{group}/{version}", kind=kind, metadata={"name": pool_name},
                spec=node_class_spec(args.identity, pool_name, pool, args.node_role_name, args.ami_alias), opts=after)
            group, version, kind = NODE_POOL_API
            self.node_pools.append(k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}", api_version=f"{group}/{version}", kind=kind, metadata={"name": pool_name},
                spec=node_pool_spec(pool_name, pool),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.wait_for, node_class])))
        self.register_outputs({})
