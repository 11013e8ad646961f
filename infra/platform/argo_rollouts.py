"""Release control: the Argo Rollouts controller, which runs the model's canary releases, moves the
ALB's traffic weights through the Ingress and aborts a release its analysis fails.

Installed with `helm.v4.Chart` (the chart has no hooks; reviewers get per-object diffs). It
verifies that the load balancer really carries each weight before the next step
(`--aws-verify-target-group`), with its own Pod Identity role that may only describe load
balancers. Pods cannot reach IMDS (one hop), so the region comes from AWS_REGION: the controller
has no region flag (https://github.com/argoproj/argo-rollouts/blob/v1.9.1/docs/features/traffic-management/alb.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra import iam
from infra.compute.placement import POOL_LABEL, spread_over_zones_and_nodes
from infra.identity import StackIdentity
from infra.platform import helm
from infra.versions import ARGO_ROLLOUTS_IMAGE_TAG

SERVICE_ACCOUNT = "argo-rollouts"
# The chart's labels for the controller's pods and its metrics Service (release name argo-rollouts).
POD_LABELS = {"app.kubernetes.io/component": "rollouts-controller", "app.kubernetes.io/name": "argo-rollouts",
              "app.kubernetes.io/instance": "argo-rollouts"}
METRICS_SERVICE_LABELS = POD_LABELS
METRICS_PORT = "metrics"
# What target-group verification calls, and nothing else (the controller's documentation lists these).
TARGET_GROUP_READ_ACTIONS = [
    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetHealth",
]


def controller_policy() -> str:
    # Describe* calls take no resource-level permissions: "*" is the only resource they accept
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html).
    return iam.policy_document([{"Sid": "VerifyTargetGroups", "Effect": "Allow", "Action": TARGET_GROUP_READ_ACTIONS,
                                 "Resource": "*"}])


@dataclass(frozen=True)
class ArgoRolloutsArgs:
    identity: StackIdentity
    system_pool: str  # the pool that always has nodes: where the controller runs
    cluster_name: pulumi.Input[str]
    wait_for: Sequence[pulumi.Resource] = ()


class ArgoRollouts(pulumi.ComponentResource):
    chart: pulumi.Resource

    def __init__(self, name: str, args: ArgoRolloutsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:platform:ArgoRollouts", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        pod_identity = iam.pod_identity_role(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=helm.NAMESPACE,
            service_account=SERVICE_ACCOUNT, policy=controller_policy(), partition=identity.partition,
            tags=identity.tags, opts=child)
        self.chart = helm.chart("argo-rollouts", {
            "controller": {
                "image": {"tag": ARGO_ROLLOUTS_IMAGE_TAG},
                # Two replicas with leader election: a release never waits for a rescheduled controller.
                "replicas": 2,
                "pdb": {"enabled": True, "maxUnavailable": 1},
                "topologySpreadConstraints": spread_over_zones_and_nodes(POD_LABELS),
                "priorityClassName": helm.CLUSTER_CRITICAL,
                "nodeSelector": {POOL_LABEL: args.system_pool},
                "resources": helm.container_resources("50m", "128Mi", "512Mi"),
                "awsVerifyTargetGroup": True,
                "extraEnv": [{"name": "AWS_REGION", "value": identity.region}],
                # The metrics Service (rollout_info_*, analysis results); its ServiceMonitor comes with
                # the rest of the model's monitoring (off by default in the chart).
                "metrics": {"enabled": True},
            },
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
            # Only the traffic router this stack uses gets RBAC (the chart grants every provider's by default).
            "providerRBAC": {"enabled": True, "providers": {
                provider: provider == "awsLoadBalancerController"
                for provider in ("istio", "smi", "ambassador", "awsLoadBalancerController", "awsAppMesh", "traefik",
                                 "apisix", "contour", "glooPlatform", "gatewayAPI")}},
        }, [*args.wait_for, pod_identity], child)
        self.register_outputs({})
