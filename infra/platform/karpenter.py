"""Karpenter 1.14: launches nodes for pending pods and takes idle ones away, for the workload pools.

Everything its controller needs, as Karpenter's reference CloudFormation template
(https://karpenter.sh/v1.14/getting-started/getting-started-with-karpenter/cloudformation.yaml) and
terraform-aws-eks's `modules/karpenter` declare it:

- the controller's own Pod Identity role, its policy the template's controller policies (node
  lifecycle, IAM integration, EKS integration, interruption, resource discovery), scoped as there by
  the cluster's name, the region and Karpenter's tags, and to this account; zonal shift's read is left
  out with `enableZonalShift` (off);
- the role its nodes run as, with an EKS access entry of type EC2_LINUX so they can join;
- the interruption queue (SQS, encrypted, 300 s retention, writable by EventBridge and SQS only,
  never over plain HTTP) and the template's five EventBridge rules feeding it: spot interruption
  warnings, rebalance recommendations, instance state changes, AWS Health events and capacity
  reservation interruptions. Karpenter drains a node before its reclaim, so aws-node-termination-handler
  is not installed beside it (https://karpenter.sh/v1.14/concepts/disruption/#interruption);
- the discovery tag on the cluster security group (the private subnets carry it from infra/network.py);
- both charts with `helm.v4.Chart` (neither has hooks): karpenter-crd first, because Helm never
  upgrades a chart's crds/, then karpenter without its crds/ (the same five CRDs: declared once).

The controller runs on the system node group, which Karpenter never manages: two replicas on two
nodes (the chart's required anti-affinity), cluster-critical. Pods reach no IMDS (one hop), so the
region comes from AWS_REGION (`controller.env`) and the endpoint from the settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.compute.karpenter import DISCOVERY_TAG
from infra.compute.placement import POOL_LABEL
from infra.identity import StackIdentity
from infra.platform import helm

SERVICE_ACCOUNT = "karpenter"
# The chart's labels for the controller's pods (release name karpenter).
POD_LABELS = {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": "karpenter"}
# As the managed node groups' role (infra/cluster.py): the template's AmazonEKS_CNI_Policy goes to the VPC
# CNI's own pod through Pod Identity instead, and its AmazonSSMManagedInstanceCore (shell access) is left out.
NODE_MANAGED_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
# SQS keeps an interruption message 5 minutes: a spot warning is worth nothing after its 2 minutes.
QUEUE_RETENTION_SECONDS = 300
QUEUE_WRITERS = ["events.amazonaws.com", "sqs.amazonaws.com"]
QUEUE_TARGET_ID = "KarpenterInterruptionQueueTarget"
# The template's EventBridge rules, by our name for each.
INTERRUPTION_EVENTS: dict[str, dict[str, list[str]]] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation-interruption": {
        "source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
}
DISCOVERY_READS = [
    "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets",
]


def controller_policy(identity: StackIdentity, account_id: str, node_role_arn: str, queue_arn: str) -> str:
    """The template's controller policies, statement by statement (the same Sids), with its `*` account
    in resource ARNs narrowed to this one."""
    cluster, arn = identity.name, f"arn:{identity.partition}"
    ec2 = f"{arn}:ec2:{identity.region}"
    profiles = f"{arn}:iam::{account_id}:instance-profile/*"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster}": "owned"}
    tagging_owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster}": "owned",
                     "aws:RequestTag/eks:eks-cluster-name": cluster}
    of_a_node_pool = {"StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}
    launched = [f"{ec2}:{account_id}:{kind}/*" for kind in (
        "fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")]
    in_region = {"aws:ResourceTag/topology.kubernetes.io/region": identity.region}
    of_a_node_class = {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}
    return iam.policy_document([
        # Node lifecycle: launch into our subnets and groups, tag what it launches, delete only its own.
        {"Sid": "AllowScopedEC2InstanceAccessActions", "Effect": "Allow",
         "Resource": [f"{ec2}::image/*", f"{ec2}::snapshot/*",
                      *(f"{ec2}:{account_id}:{kind}/*" for kind in (
                          "security-group", "subnet", "capacity-reservation", "placement-group"))],
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"]},
        {"Sid": "AllowScopedEC2LaunchTemplateAccessActions", "Effect": "Allow",
         "Resource": f"{ec2}:{account_id}:launch-template/*", "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
         "Condition": {"StringEquals": owned, **of_a_node_pool}},
        {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow", "Resource": launched,
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
         "Condition": {"StringEquals": tagging_owned,
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Resource": launched,
         "Action": ["ec2:CreateTags"],
         "Condition": {"StringEquals": {**tagging_owned,
                                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Resource": f"{ec2}:{account_id}:instance/*",
         "Action": ["ec2:CreateTags"],
         "Condition": {"StringEquals": owned, **of_a_node_pool,
                       "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster},
                       "ForAllValues:StringEquals": {
                           "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]}}},
        {"Sid": "AllowScopedDeletion", "Effect": "Allow",
         "Resource": [f"{ec2}:{account_id}:instance/*", f"{ec2}:{account_id}:launch-template/*"],
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
         "Condition": {"StringEquals": owned, **of_a_node_pool}},
        # IAM integration: pass the node role only, and manage instance profiles it tagged for this cluster.
        {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Resource": node_role_arn, "Action": ["iam:PassRole"],
         "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}},
        {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow", "Resource": profiles,
         "Action": ["iam:CreateInstanceProfile"],
         "Condition": {"StringEquals": {**tagging_owned,
                                        "aws:RequestTag/topology.kubernetes.io/region": identity.region},
                       "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow", "Resource": profiles,
         "Action": ["iam:TagInstanceProfile"],
         "Condition": {"StringEquals": {**owned, **in_region, **tagging_owned,
                                        "aws:RequestTag/topology.kubernetes.io/region": identity.region},
                       "StringLike": {**of_a_node_class, "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow", "Resource": profiles,
         "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
         "Condition": {"StringEquals": {**owned, **in_region}, "StringLike": of_a_node_class}},
        # EKS integration: the cluster's endpoint and service CIDR.
        {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow", "Action": ["eks:DescribeCluster"],
         "Resource": f"{arn}:eks:{identity.region}:{account_id}:cluster/{cluster}"},
        # Interruption: read and delete messages of its own queue.
        {"Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": queue_arn,
         "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]},
        # Resource discovery: reads that take no resource-level permissions, limited to the region.
        {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*", "Action": DISCOVERY_READS,
         "Condition": {"StringEquals": {"aws:RequestedRegion": identity.region}}},
        {"Sid": "AllowSSMReadActions", "Effect": "Allow", "Action": ["ssm:GetParameter"],
         "Resource": f"{arn}:ssm:{identity.region}::parameter/aws/service/*"},
        {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": ["pricing:GetProducts"]},
        {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Resource": "*",
         "Action": ["iam:ListInstanceProfiles"]},
        {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Resource": profiles,
         "Action": ["iam:GetInstanceProfile"]},
    ])


def queue_policy(queue_arn: str) -> str:
    return iam.policy_document([
        {"Sid": "EventBridgeAndSqsSend", "Effect": "Allow", "Principal": {"Service": QUEUE_WRITERS},
         "Action": ["sqs:SendMessage"], "Resource": queue_arn},
        {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": ["sqs:*"], "Resource": queue_arn,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ])


@dataclass(frozen=True)
class KarpenterArgs:
    identity: StackIdentity
    system_pool: str  # the node group Karpenter never manages: where its controller runs
    cluster_name: pulumi.Input[str]
    cluster_endpoint: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    account_id: str
    wait_for: Sequence[pulumi.Resource] = ()


def chart_values(args: KarpenterArgs, queue_name: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "settings": {
            "clusterName": args.cluster_name,
            "clusterEndpoint": args.cluster_endpoint,
            "interruptionQueue": queue_name,
            # Node repair stays off: alpha in 1.14 (off by default), and it repairs nothing in a pool
            # where more than 20% of the nodes are unhealthy (https://karpenter.sh/v1.14/concepts/disruption/),
            # which one node of a small GPU pool already is. The node monitoring agent's conditions are
            # there to read, and the system node group repairs itself (README, "Node provisioning").
            "featureGates": {"nodeRepair": False},
        },
        "controller": {
            "env": [{"name": "AWS_REGION", "value": args.identity.region}],
            # Its memory grows with the instance types it weighs: a few families here (Karpenter's guide
            # sizes 1 CPU and 1Gi for clusters choosing among hundreds).
            "resources": helm.container_resources("250m", "512Mi", "1Gi"),
        },
        "replicas": 2,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "nodeSelector": {"kubernetes.io/os": "linux", POOL_LABEL: args.system_pool},
        "priorityClassName": helm.CLUSTER_CRITICAL,
        # Hard over zones, as the chart's default: a replica waits for a node in another zone rather than
        # join its peer's, so one zone's loss never takes the provisioner with it. The chart's required
        # pod anti-affinity already keeps the two replicas on different nodes.
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchLabels": dict(POD_LABELS)}}],
    }


class Karpenter(pulumi.ComponentResource):
    crd_chart: pulumi.Resource
    chart: pulumi.Resource
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    # Nodes can join the cluster once it exists.
    node_access: pulumi.Resource
    queue_name: pulumi.Output[str]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:platform:Karpenter", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)

        self.node_role_arn = iam.role_with_policies(
            f"{name}-node", service="ec2.amazonaws.com", partition=identity.partition, tags=identity.tags,
            managed_policies=NODE_MANAGED_POLICIES, opts=child)
        self.node_role_name = self.node_role_arn.apply(lambda role_arn: role_arn.rsplit("/", 1)[-1])
        self.node_access = aws.eks.AccessEntry(
            f"{name}-nodes", cluster_name=args.cluster_name, principal_arn=self.node_role_arn, type="EC2_LINUX",
            tags=identity.tags, opts=child)
        aws.ec2.Tag(f"{name}-discovery", resource_id=args.cluster_security_group_id, key=DISCOVERY_TAG,
                    value=identity.name, opts=child)

        queue = aws.sqs.Queue(
            f"{name}-interruption", name=identity.name, message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True, tags=identity.tags, opts=child)
        aws.sqs.QueuePolicy(f"{name}-interruption", queue_url=queue.url, policy=queue.arn.apply(queue_policy),
                            opts=child)
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}", description=f"Karpenter of {identity.name}: {pattern['detail-type'][0]}",
                event_pattern=json.dumps(pattern), tags=identity.tags, opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{event}", rule=rule.name, arn=queue.arn, target_id=QUEUE_TARGET_ID,
                                       opts=child)
        self.queue_name = queue.name

        pod_identity = iam.pod_identity_role(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=helm.NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=pulumi.Output.all(self.node_role_arn, queue.arn).apply(
                lambda arns: controller_policy(identity, args.account_id, str(arns[0]), str(arns[1]))),
            partition=identity.partition, tags=identity.tags, opts=child)
        self.crd_chart = helm.chart("karpenter-crd", {}, args.wait_for, child)
        self.chart = helm.chart("karpenter", chart_values(args, queue.name),
                                [*args.wait_for, self.crd_chart, pod_identity], child, skip_crds=True)
        self.register_outputs({"interruptionQueue": self.queue_name})
