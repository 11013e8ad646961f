"""IAM building blocks shared by components: trust policies, policy documents, Pod Identity roles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

# EKS Pod Identity: the agent on each node assumes the role for the pod and tags the
# session; no OIDC provider needed (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html).
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


def trust_policy(service: str, actions: Sequence[str] = ("sts:AssumeRole",)) -> str:
    """A role trust policy letting one AWS service principal assume the role."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}],
    })


def policy_document(statements: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def role_with_policies(
    name: str,
    *,
    service: str,
    partition: str,
    tags: dict[str, str],
    managed_policies: Sequence[str] = (),
    inline_policy: pulumi.Input[str] | None = None,
    opts: pulumi.ResourceOptions,
) -> pulumi.Output[str]:
    """A role for one service principal with AWS managed policies and, optionally, our own inline policy.

    Returns the role's ARN as an output that resolves only once every policy is attached, so
    whatever uses the role (a cluster, a node group, a pod) never starts without its permissions.
    """
    actions = ("sts:AssumeRole", "sts:TagSession") if service == POD_IDENTITY_PRINCIPAL else ("sts:AssumeRole",)
    role = aws.iam.Role(name, assume_role_policy=trust_policy(service, actions), tags=tags, opts=opts)
    grants: list[pulumi.Output[str]] = [
        aws.iam.RolePolicyAttachment(f"{name}-{policy.rsplit('/', 1)[-1]}", role=role.name,
                                     policy_arn=managed_policy_arn(partition, policy), opts=opts).id
        for policy in managed_policies
    ]
    if inline_policy is not None:
        grants.append(aws.iam.RolePolicy(name, role=role.id, policy=inline_policy, opts=opts).id)
    return pulumi.Output.all(role.arn, *grants).apply(lambda values: str(values[0]))


def pod_identity_role(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    policy: pulumi.Input[str],
    partition: str,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.eks.PodIdentityAssociation:
    """A role with our own policy, bound to one Kubernetes service account through EKS Pod Identity.
    Whatever runs as that account should depend on the returned association: a pod started
    before it exists runs without AWS credentials."""
    role_arn = role_with_policies(name, service=POD_IDENTITY_PRINCIPAL, partition=partition, tags=tags,
                                  inline_policy=policy, opts=opts)
    return aws.eks.PodIdentityAssociation(
        name, cluster_name=cluster_name, namespace=namespace, service_account=service_account,
        role_arn=role_arn, tags=tags, opts=opts)
