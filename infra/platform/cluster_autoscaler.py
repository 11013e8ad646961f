"""Cluster Autoscaler: adds nodes when pods cannot be scheduled, removes idle ones.

Installed with `helm.v4.Chart` (the chart has no hooks, so reviewers get per-object diffs).
It discovers this cluster's node groups by the tags EKS puts on their Auto Scaling groups,
and scales a GPU pool up from zero: the node group's labels and taints come from
eks:DescribeNodegroup and the GPU count from the autoscaler's instance-type table
(https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md#scaling-a-node-group-to-0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra import iam
from infra.compute.placement import POOL_LABEL
from infra.identity import StackIdentity
from infra.platform import helm
from infra.versions import KUBERNETES_RELEASES

SERVICE_ACCOUNT = "cluster-autoscaler"
READ_ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
]
WRITE_ACTIONS = ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]


def autoscaler_policy(identity: StackIdentity, account_id: str) -> str:
    return iam.policy_document([
        {"Sid": "Discover", "Effect": "Allow", "Action": READ_ACTIONS, "Resource": "*"},
        # EKS tags each managed node group's Auto Scaling group k8s.io/cluster-autoscaler/<cluster>=owned.
        {"Sid": "ScaleThisClustersGroups", "Effect": "Allow", "Action": WRITE_ACTIONS, "Resource": "*",
         "Condition": {"StringEquals": {
             f"aws:ResourceTag/k8s.io/cluster-autoscaler/{identity.name}": "owned"}}},
        {"Sid": "ReadNodeGroupLabelsAndTaints", "Effect": "Allow", "Action": ["eks:DescribeNodegroup"],
         "Resource": f"arn:{identity.partition}:eks:{identity.region}:{account_id}:nodegroup/{identity.name}/*/*"},
    ])


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    identity: StackIdentity
    kubernetes_version: str
    system_pool: str  # the pool that always has nodes: where the autoscaler runs
    cluster_name: pulumi.Input[str]
    account_id: str
    wait_for: Sequence[pulumi.Resource] = ()


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:ClusterAutoscaler", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        pod_identity = iam.pod_identity_role(
            f"{name}-autoscaler", cluster_name=args.cluster_name, namespace=helm.NAMESPACE,
            service_account=SERVICE_ACCOUNT, policy=autoscaler_policy(identity, args.account_id),
            partition=identity.partition, tags=identity.tags, opts=child)
        helm.chart("cluster-autoscaler", {
            "cloudProvider": "aws",
            "awsRegion": identity.region,  # nodes allow one IMDS hop: pods cannot look it up
            "autoDiscovery": {"clusterName": args.cluster_name},
            "image": {"tag": KUBERNETES_RELEASES[args.kubernetes_version].cluster_autoscaler_image_tag},
            "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
            "nodeSelector": {POOL_LABEL: args.system_pool},
            "priorityClassName": helm.CLUSTER_CRITICAL,
            # Memory grows with the number of nodes and pods it simulates; ample for hundreds of nodes.
            "resources": helm.container_resources("100m", "300Mi", "1Gi"),
            "extraArgs": {
                # No balance-similar-node-groups: each pool is one node group spanning every zone
                # (the Auto Scaling group spreads its instances over them), and no two pools are alike.
                "expander": "least-waste",
                # Give a node ten minutes of idleness before removing it, and a new node ten
                # minutes before it may go: fewer flaps, and GPU nodes (slow to start) are kept warm.
                "scale-down-unneeded-time": "10m",
                "scale-down-delay-after-add": "10m",
                "scale-down-utilization-threshold": 0.5,
                # Pods with emptyDir (the model server's /tmp) must not pin a node forever.
                "skip-nodes-with-local-storage": False,
                "max-node-provision-time": "15m",
            },
        }, [*args.wait_for, pod_identity], child)
        self.register_outputs({})
