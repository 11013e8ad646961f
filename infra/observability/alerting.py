"""Alerting: the SNS topic Alertmanager sends to, its email subscriptions, and Alertmanager's own
AWS identity (Pod Identity), allowed only to publish to that topic. Alertmanager signs its
requests with SigV4 (sns_configs.sigv4), so no static credentials exist anywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.identity import StackIdentity

MONITORING_NAMESPACE = "monitoring"
ALERTMANAGER_SERVICE_ACCOUNT = "alertmanager"


@dataclass(frozen=True)
class AlertingArgs:
    identity: StackIdentity
    alert_emails: Sequence[str]
    cluster_name: pulumi.Input[str]


def publish_policy(topic_arn: str) -> str:
    return iam.policy_document([{"Sid": "PublishAlerts", "Effect": "Allow", "Action": ["sns:Publish"],
                                 "Resource": topic_arn}])


class Alerting(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    identity: aws.eks.PodIdentityAssociation

    def __init__(self, name: str, args: AlertingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:observability:Alerting", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(
            f"{name}-alerts", name=f"{identity.name}-alerts",
            # Encrypted at rest with the account's AWS managed SNS key (email delivery needs no key policy).
            kms_master_key_id="alias/aws/sns", tags=identity.tags, opts=child)
        for email in args.alert_emails:
            aws.sns.TopicSubscription(
                f"{name}-email-{re.sub(r'[^a-z0-9]+', '-', email.lower())}", topic=topic.arn, protocol="email",
                endpoint=email, opts=child)
        self.topic_arn = topic.arn
        self.identity = iam.pod_identity_role(
            f"{name}-alertmanager", cluster_name=args.cluster_name, namespace=MONITORING_NAMESPACE,
            service_account=ALERTMANAGER_SERVICE_ACCOUNT, policy=topic.arn.apply(publish_policy),
            partition=identity.partition, tags=identity.tags, opts=child)
        self.register_outputs({"topicArn": self.topic_arn})
