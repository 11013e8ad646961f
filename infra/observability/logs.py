"""ContainerLogs: every container's stdout and stderr shipped to one CloudWatch Logs group per
stack by aws-for-fluent-bit, with the server's JSON lines parsed into structured fields.

The group is created here, with its retention; fluent-bit never creates groups and its own
identity (Pod Identity) may write only to this one. Installed with `helm.v4.Chart`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.identity import StackIdentity
from infra.platform import helm

SERVICE_ACCOUNT = "aws-for-fluent-bit"
WRITE_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]


@dataclass(frozen=True)
class ContainerLogsArgs:
    identity: StackIdentity
    retention_days: int
    cluster_name: pulumi.Input[str]
    wait_for: Sequence[pulumi.Resource] = ()


def log_group_name(identity: StackIdentity) -> str:
    return f"/aws/eks/{identity.name}/containers"


def write_policy(group_arn: str) -> str:
    # A group's ARN ends in ":*"; its streams are "<group>:log-stream:<name>".
    group = group_arn.removesuffix(":*")
    return iam.policy_document([{"Sid": "WriteThisGroup", "Effect": "Allow", "Action": WRITE_ACTIONS,
                                 "Resource": [group, f"{group}:log-stream:*"]}])


def fluent_bit_values(identity: StackIdentity) -> dict[str, Any]:
    return {
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "cloudWatchLogs": {
            "enabled": True, "region": identity.region, "logGroupName": log_group_name(identity),
            "logStreamPrefix": "", "logStreamTemplate": "$kubernetes['namespace_name'].$kubernetes['pod_name']"
                                                        ".$kubernetes['container_name']",
            "autoCreateGroup": False,
        },
        # Only CloudWatch Logs: the chart's other outputs stay off.
        **{output: {"enabled": False} for output in ("cloudWatch", "firehose", "kinesis", "elasticsearch")},
        # A container line that is JSON (the server's access log) becomes structured fields under
        # `data`; the raw line is not kept twice.
        "filter": {"mergeLog": "On", "mergeLogKey": "data", "keepLog": "Off"},
        "priorityClassName": "system-node-critical",
        "tolerations": [{"operator": "Exists"}],  # every node, GPU nodes included
        "resources": helm.container_resources("50m", "64Mi", "256Mi"),
    }


class ContainerLogs(pulumi.ComponentResource):
    log_group_name: str

    def __init__(self, name: str, args: ContainerLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:observability:ContainerLogs", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-containers", name=log_group_name(identity),
            retention_in_days=args.retention_days, tags=identity.tags, opts=child)
        pod_identity = iam.pod_identity_role(
            f"{name}-fluent-bit", cluster_name=args.cluster_name, namespace=helm.NAMESPACE,
            service_account=SERVICE_ACCOUNT, policy=group.arn.apply(write_policy), partition=identity.partition,
            tags=identity.tags, opts=child)
        helm.chart("aws-for-fluent-bit", fluent_bit_values(identity), [*args.wait_for, pod_identity, group], child)
        self.log_group_name = log_group_name(identity)
        self.register_outputs({"logGroupName": self.log_group_name})
