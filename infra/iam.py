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
        aws.iam.RolePolicyAttachment(
            f"{name}-{policy}", role=role.name, policy_arn=managed_policy_arn(partition, policy), opts=opts).id
        for policy in managed_policies
    ]
    if inline_policy is not None:
        grants.append(aws.iam.RolePolicy(name, role=role.id, policy=inline_policy, opts=opts).id)
    return pulumi.Output.all(role.arn, *grants).apply(lambda values: str(values[0]))
