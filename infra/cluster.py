"""Cluster: the EKS control plane, its encryption key and logs, access entries, and a Kubernetes provider."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.identity import StackIdentity
from infra.network import Network

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator"]
CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    identity: StackIdentity
    kubernetes_version: str
    endpoint_public_access_cidrs: Sequence[str]
    admin_principal_arns: Sequence[str]
    control_plane_log_retention_days: int
    network: Network
    provider: aws.Provider


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    arn: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    # The security group EKS creates for the cluster; managed node groups' nodes carry it.
    security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    kubernetes_provider: k8s.Provider
    account_id: str

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:cluster:Cluster", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        # Losing the key makes every Kubernetes secret unreadable: never delete it by accident.
        stateful = pulumi.ResourceOptions(parent=self, protect=identity.production)

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes secrets in EKS cluster {identity.name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=identity.tags,
            opts=stateful,
        )
        aws.kms.Alias(f"{name}-secrets", name=f"alias/{identity.name}-eks-secrets",
                      target_key_id=secrets_key.key_id, opts=child)

        # EKS writes to this exact group name; creating it first lets us own its retention
        # (https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{identity.name}/cluster",
            retention_in_days=args.control_plane_log_retention_days,
            tags=identity.tags,
            opts=child,
        )

        cluster_role_arn = iam.role_with_policies(
            f"{name}-control-plane", service="eks.amazonaws.com", partition=identity.partition,
            tags=identity.tags, managed_policies=["AmazonEKSClusterPolicy"], opts=child)
        # Nodes get only what kubelet needs and read-only image pulls; the VPC CNI's network
        # permissions go to its own pod through Pod Identity (infra/addons.py), not to every node.
        self.node_role_arn = iam.role_with_policies(
            f"{name}-node", service="ec2.amazonaws.com", partition=identity.partition, tags=identity.tags,
            managed_policies=["AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly"], opts=child)

        public_cidrs = list(args.endpoint_public_access_cidrs)
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=identity.name,
            version=args.kubernetes_version,
            role_arn=cluster_role_arn,
            vpc_config={
                "subnet_ids": args.network.private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": bool(public_cidrs),
                "public_access_cidrs": public_cidrs or None,
            },
            access_config={
                "authentication_mode": "API",
                # The deploying identity gets an explicit, visible access entry below instead.
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            # Auto-upgrade at the end of standard support rather than pay for extended support.
            upgrade_policy={"support_type": "STANDARD"},
            # Add-ons are explicit aws.eks.Addon resources (infra/addons.py) with pinned versions.
            bootstrap_self_managed_addons=False,
            deletion_protection=identity.production,
            tags=identity.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )

        invoke = pulumi.InvokeOptions(provider=args.provider)
        caller = aws.get_caller_identity(opts=invoke)
        self.account_id = caller.account_id
        # An assumed-role session ARN cannot be an access entry; its role's ARN can.
        deployer = aws.iam.get_session_context(arn=caller.arn, opts=invoke).issuer_arn
        admin_access: list[pulumi.Resource] = []
        for principal_name, principal_arn in admin_principals(args.admin_principal_arns, deployer).items():
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{principal_name}", cluster_name=cluster.name, principal_arn=principal_arn,
                type="STANDARD", tags=identity.tags, opts=child)
            admin_access.append(aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{principal_name}",
                cluster_name=cluster.name,
                principal_arn=entry.principal_arn,
                policy_arn=f"arn:{identity.partition}:eks::aws:cluster-access-policy/{CLUSTER_ADMIN_POLICY}",
                access_scope={"type": "cluster"},
                opts=child,
            ))

        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.arn = cluster.arn
        self.security_group_id = cluster.vpc_config.apply(created_security_group)
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.data,
        ).apply(lambda values: kubeconfig(str(values[0]), str(values[1]), str(values[2]), identity.region)))
        self.kubernetes_provider = k8s.Provider(
            f"{name}-kubernetes",
            kubeconfig=self.kubeconfig,
            # Identify the cluster by ARN so a kubeconfig change (new CA, new token command) does
            # not replace the provider and with it every Kubernetes object.
            cluster_identifier=cluster.arn,
            # With bootstrap_cluster_creator_admin_permissions off, the deployer can reach the API only
            # once its access entry and cluster-admin association exist; everything on the cluster
            # uses this provider, so it all waits for them (a 401/403 on the first `up` otherwise).
            opts=pulumi.ResourceOptions(parent=self, depends_on=admin_access),
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "kubeconfig": self.kubeconfig})



def created_security_group(config: aws.eks.outputs.ClusterVpcConfig) -> str:
    """The cluster security group's ID, which EKS sets when it creates the cluster."""
    assert config.cluster_security_group_id is not None
    return config.cluster_security_group_id


def admin_principals(admin_principal_arns: Sequence[str], deployer: str) -> dict[str, str]:
    """Cluster admins: whoever runs `pulumi up` (it must reach the API to install the Kubernetes
    layer) plus the configured principals, keyed by a stable resource-name suffix."""
    principals = {"deployer": deployer}
    for arn in admin_principal_arns:
        if arn != deployer:
            principals[re.sub(r"[^a-zA-Z0-9-]", "-", arn.split(":", 5)[5])] = arn
    return principals


def kubeconfig(cluster_name: str, endpoint: str, certificate_authority: str, region: str) -> str:
    """A kubeconfig that gets short-lived tokens from `aws eks get-token` (no static credentials)."""
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint,
                                                         "certificate-authority-data": certificate_authority}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
        }}}],
    })
