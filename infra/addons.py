"""EKS managed add-ons, declared from one table with pinned versions (infra/versions.py).

The cluster is created with `bootstrap_self_managed_addons=False`, so nothing runs in it
until these exist. They come in two sets: networking before the nodes (a node is not
Ready without its CNI) and the rest after them (CoreDNS and the CSI controllers are
Deployments: created with no node to run on, the add-on stays DEGRADED and the create
times out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.compute.placement import GPU_TOLERATION
from infra.identity import StackIdentity
from infra.versions import KUBERNETES_RELEASES

POD_IDENTITY_AGENT = "eks-pod-identity-agent"
NODE_MONITORING_AGENT = "eks-node-monitoring-agent"


@dataclass(frozen=True)
class AddonIdentity:
    """A kube-system service account of the add-on that gets AWS permissions through Pod Identity."""

    service_account: str
    managed_policies: tuple[str, ...] = ()
    inline_statements: tuple[dict[str, Any], ...] = ()
    # Appended to the role's resource name; empty for the add-on's first identity (kept as it was).
    role_suffix: str = ""


@dataclass(frozen=True)
class AddonSpec:
    identities: tuple[AddonIdentity, ...] = ()
    configuration: dict[str, Any] = field(default_factory=dict)


ADDONS: dict[str, AddonSpec] = {
    POD_IDENTITY_AGENT: AddonSpec(),
    "vpc-cni": AddonSpec(
        identities=(AddonIdentity("aws-node", managed_policies=("AmazonEKS_CNI_Policy",)),),
        # Without the network policy agent, NetworkPolicy objects are accepted but not enforced
        # (https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy.html).
        configuration={"enableNetworkPolicy": "true"},
    ),
    "kube-proxy": AddonSpec(),
    "coredns": AddonSpec(),
    # Storage drivers: their controllers call EC2/EFS APIs with AWS managed policies.
    "aws-ebs-csi-driver": AddonSpec(identities=(
        AddonIdentity("ebs-csi-controller-sa", managed_policies=("service-role/AmazonEBSCSIDriverPolicy",)),)),
    # EFS CSI v3 runs its node DaemonSet under its own service account: the node plugin only looks up
    # mount targets and zones (efs-utils' fallback when a mount target's DNS name does not resolve),
    # so it gets just that instead of the controller's access-point permissions.
    "aws-efs-csi-driver": AddonSpec(identities=(
        AddonIdentity("efs-csi-controller-sa", managed_policies=("service-role/AmazonEFSCSIDriverPolicy",)),
        AddonIdentity("efs-csi-node-sa", role_suffix="node", inline_statements=(
            {"Sid": "FindMountTargets", "Effect": "Allow", "Resource": "*",
             "Action": ["elasticfilesystem:DescribeMountTargets", "ec2:DescribeAvailabilityZones"]},)),
    )),
    # Node health: the agent reads each node's logs and sets NodeConditions (kubelet, containerd, disk,
    # network, GPU) that managed node groups' auto repair acts on
    # (https://docs.aws.amazon.com/eks/latest/userguide/node-health.html). Its node DaemonSet tolerates
    # every taint; its DCGM host engine, which the GPU checks talk to, tolerates none by default and would
    # stay off our tainted GPU nodes, where the agent would then report AcceleratedHardwareReady=False
    # (DCGMError) and get healthy GPU nodes repaired (the agent's chart README, "DCGM host engine").
    NODE_MONITORING_AGENT: AddonSpec(configuration={"dcgmAgent": {"tolerations": [dict(GPU_TOLERATION)]}}),
}

BEFORE_NODES: tuple[str, ...] = (POD_IDENTITY_AGENT, "vpc-cni", "kube-proxy")
AFTER_NODES: tuple[str, ...] = ("coredns", "aws-ebs-csi-driver", "aws-efs-csi-driver", NODE_MONITORING_AGENT)


@dataclass(frozen=True)
class EksAddonsArgs:
    identity: StackIdentity
    kubernetes_version: str
    cluster_name: pulumi.Input[str]
    addon_names: Sequence[str]
    # Children do not inherit a component's depends_on, so each add-on is told what to wait for.
    wait_for: Sequence[pulumi.Resource] = ()


class EksAddons(pulumi.ComponentResource):
    def __init__(self, name: str, args: EksAddonsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:cluster:EksAddons", name, None, opts)
        identity = args.identity
        versions = KUBERNETES_RELEASES[args.kubernetes_version].eks_addons
        child = pulumi.ResourceOptions(parent=self)
        created: dict[str, aws.eks.Addon] = {}
        for addon_name in args.addon_names:
            spec = ADDONS[addon_name]
            pod_identity: list[aws.eks.AddonPodIdentityAssociationArgsDict] = []
            depends_on: list[pulumi.Resource] = list(args.wait_for)
            for addon_identity in spec.identities:
                role_name = "-".join(filter(None, (name, addon_name, addon_identity.role_suffix)))
                role_arn = iam.role_with_policies(
                    role_name, service=iam.POD_IDENTITY_PRINCIPAL, partition=identity.partition,
                    tags=identity.tags, managed_policies=addon_identity.managed_policies,
                    inline_policy=iam.policy_document(addon_identity.inline_statements)
                    if addon_identity.inline_statements else None, opts=child)
                pod_identity.append({"role_arn": role_arn, "service_account": addon_identity.service_account})
            # Credentials come from the agent: in the same set, wait for it.
            if spec.identities and POD_IDENTITY_AGENT in created:
                depends_on.append(created[POD_IDENTITY_AGENT])
            created[addon_name] = aws.eks.Addon(
                f"{name}-{addon_name}",
                cluster_name=args.cluster_name,
                addon_name=addon_name,
                addon_version=versions[addon_name],
                configuration_values=json.dumps(spec.configuration) if spec.configuration else None,
                pod_identity_associations=pod_identity or None,
                # These add-ons are ours alone: take over fields another manager may have set.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                tags=identity.tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
            )
        self.addons = created
        self.register_outputs({"addons": {n: a.addon_version for n, a in created.items()}})
