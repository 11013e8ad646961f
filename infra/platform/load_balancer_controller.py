"""The ingress controller: AWS Load Balancer Controller, turning Ingresses of class `alb` into ALBs.

Installed with `helm.v3.Release`, so a failed upgrade rolls back (`atomic`) and the release
is ready, webhooks answering, before anything that depends on it is created. Its webhooks
reject requests they cannot reach (`failurePolicy: Fail`): everything that creates a Service
or an Ingress must wait for `LoadBalancerController.release`, and the webhook certificate
comes from Pulumi (infra/platform/webhook_tls.py) so an upgrade never changes its CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra import iam
from infra.compute.placement import POOL_LABEL, spread_over_zones_and_nodes
from infra.identity import StackIdentity
from infra.platform import helm
from infra.platform.webhook_tls import WebhookCertificate

SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The chart's names for the controller's pods and its webhook Service (release name
# aws-load-balancer-controller); the webhook certificate must name that Service.
POD_LABELS = {"app.kubernetes.io/name": "aws-load-balancer-controller",
              "app.kubernetes.io/instance": "aws-load-balancer-controller"}
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"
INGRESS_CLASS = "alb"
CLUSTER_TAG = "elbv2.k8s.aws/cluster"


# From AWS's reference policy for v3.5.0: what the controller calls when WAFv2 is enabled.
# Associating a web ACL with an ALB also needs elasticloadbalancing:SetWebAcl on the balancer
# (https://docs.aws.amazon.com/waf/latest/APIReference/API_AssociateWebACL.html).
WAFV2_ACTIONS = ["wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL",
                 "wafv2:DisassociateWebACL", "elasticloadbalancing:SetWebAcl"]


def controller_policy(identity: StackIdentity, account_id: str, waf_enabled: bool) -> str:
    """The controller's permissions for chart 3.5.0, derived from AWS's published policy for that
    version (docs/install/iam_policy.json in kubernetes-sigs/aws-load-balancer-controller), tightened:
    resources are limited to this region and account, writes to resources tagged for this cluster.
    Shield and classic WAF are never used (the Helm values turn them off), and WAFv2 only when the
    stack's WAF is on, with exactly the actions it needs."""
    arn = f"arn:{identity.partition}"
    ec2 = f"{arn}:ec2:{identity.region}:{account_id}"
    elb = f"{arn}:elasticloadbalancing:{identity.region}:{account_id}"
    ours = {"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": identity.name}}
    tagging_ours = {"StringEquals": {f"aws:RequestTag/{CLUSTER_TAG}": identity.name}}
    balancers = [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"]
    return iam.policy_document([
        {"Sid": "CreateServiceLinkedRole", "Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"],
         "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
        {"Sid": "Describe", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
            "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
            "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTrustStores", "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeCapacityReservation",
            "cognito-idp:DescribeUserPoolClient", "acm:ListCertificates", "acm:DescribeCertificate",
            "iam:ListServerCertificates", "iam:GetServerCertificate"]},
        {"Sid": "ManageSecurityGroupRules", "Effect": "Allow", "Resource": f"{ec2}:security-group/*",
         "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]},
        {"Sid": "CreateSecurityGroup", "Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": "*"},
        {"Sid": "TagNewSecurityGroup", "Effect": "Allow", "Action": ["ec2:CreateTags"],
         "Resource": f"{ec2}:security-group/*",
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup",
                                        f"aws:RequestTag/{CLUSTER_TAG}": identity.name}}},
        {"Sid": "RetagOwnSecurityGroups", "Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
         "Resource": f"{ec2}:security-group/*", "Condition": ours},
        {"Sid": "ManageOwnSecurityGroups", "Effect": "Allow", "Resource": "*", "Condition": ours, "Action": [
            "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"]},
        {"Sid": "CreateBalancers", "Effect": "Allow", "Resource": "*", "Condition": tagging_ours, "Action": [
            "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"]},
        {"Sid": "ManageListenersAndRules", "Effect": "Allow", "Resource": "*", "Action": [
            "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule"]},
        {"Sid": "RetagOwnBalancers", "Effect": "Allow", "Resource": balancers, "Condition": ours, "Action": [
            "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"]},
        {"Sid": "TagListenersAndRules", "Effect": "Allow", "Action": [
            "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"], "Resource": [
            f"{elb}:listener/net/*/*/*", f"{elb}:listener/app/*/*/*",
            f"{elb}:listener-rule/net/*/*/*", f"{elb}:listener-rule/app/*/*/*"]},
        {"Sid": "ManageOwnBalancers", "Effect": "Allow", "Resource": "*", "Condition": ours, "Action": [
            "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
            "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:ModifyCapacityReservation",
            "elasticloadbalancing:ModifyIpPools"]},
        {"Sid": "TagNewBalancers", "Effect": "Allow", "Action": ["elasticloadbalancing:AddTags"],
         "Resource": balancers, "Condition": {
             "StringEquals": {"elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"],
                              f"aws:RequestTag/{CLUSTER_TAG}": identity.name}}},
        {"Sid": "RegisterTargets", "Effect": "Allow", "Resource": f"{elb}:targetgroup/*/*", "Action": [
            "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]},
        {"Sid": "ManageListenerSettings", "Effect": "Allow", "Resource": "*", "Action": [
            "elasticloadbalancing:ModifyListener", "elasticloadbalancing:AddListenerCertificates",
            "elasticloadbalancing:RemoveListenerCertificates", "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:SetRulePriorities"]},
        *([{"Sid": "AttachWebAcl", "Effect": "Allow", "Resource": "*", "Action": WAFV2_ACTIONS}]
          if waf_enabled else []),
    ])


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    identity: StackIdentity
    system_pool: str  # the pool that always has nodes: where the controller runs
    waf_enabled: bool  # the stack has a WAFv2 web ACL: the controller attaches it, with the permissions for it
    cluster_name: pulumi.Input[str]
    account_id: str
    vpc_id: pulumi.Input[str]
    wait_for: Sequence[pulumi.Resource] = ()


class LoadBalancerController(pulumi.ComponentResource):
    ingress_class = INGRESS_CLASS

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:LoadBalancerController", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        pod_identity = iam.pod_identity_role(
            f"{name}-controller", cluster_name=args.cluster_name, namespace=helm.NAMESPACE,
            service_account=SERVICE_ACCOUNT, policy=controller_policy(identity, args.account_id, args.waf_enabled),
            partition=identity.partition, tags=identity.tags, opts=child)
        webhook = WebhookCertificate.create(f"{name}-webhook", service=WEBHOOK_SERVICE, namespace=helm.NAMESPACE,
                                            opts=child)
        self.release = helm.release("aws-load-balancer-controller", {
            "clusterName": args.cluster_name,
            # Nodes allow one IMDS hop, so pods cannot look these up: pass them in.
            "region": identity.region,
            "vpcId": args.vpc_id,
            "replicaCount": 2,
            "podDisruptionBudget": {"maxUnavailable": 1},
            "topologySpreadConstraints": spread_over_zones_and_nodes(POD_LABELS),
            "priorityClassName": helm.CLUSTER_CRITICAL,
            "resources": helm.container_resources("50m", "128Mi", "512Mi"),
            "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
            "nodeSelector": {POOL_LABEL: args.system_pool},
            "ingressClass": INGRESS_CLASS,
            "createIngressClassResource": True,
            "webhookTLS": {"caCert": webhook.ca_pem, "cert": webhook.cert_pem, "key": webhook.key_pem},
            # This stack makes no Services of type LoadBalancer (the model is reached through an
            # Ingress), so the webhook that would mutate every new Service is left out.
            "enableServiceMutatorWebhook": False,
            # Shield and classic WAF are not used, and their permissions are not granted; WAFv2 only
            # when the stack has a web ACL (with it on, the controller checks every ALB's association).
            "enableShield": False,
            "enableWaf": False,
            "enableWafv2": args.waf_enabled,
            # Load balancers and target groups the controller creates carry the stack's tags too.
            "defaultTags": identity.tags,
        }, [*args.wait_for, pod_identity], child)
        self.register_outputs({"ingressClass": INGRESS_CLASS})
