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


def subscription_name(email: str) -> str:
    """A resource-name part unique to each address (settings refuse addresses equal but for case):
    letters, digits and dots stay, every other character becomes its code point in hex between two
    '-', so on.call@ and on-call@ never share a name."""
    return "".join(char if char.isascii() and (char.isalnum() or char == ".") else f"-{ord(char):x}-"
                   for char in email.lower())


def legacy_subscription_name(email: str) -> str:
    """The name subscriptions had before: every run of other characters became one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", email.lower())


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
        legacy_names = [legacy_subscription_name(email) for email in args.alert_emails]
        for email, legacy_name in zip(args.alert_emails, legacy_names, strict=True):
            # Subscriptions named before the names were injective keep their URN (a replacement would
            # unsubscribe the address until its owner confirms again); a legacy name shared by two
            # addresses never deployed (the engine refused the duplicate URN).
            aliases = [pulumi.Alias(name=f"{name}-email-{legacy_name}")] if legacy_names.count(legacy_name) == 1 \
                else []
            aws.sns.TopicSubscription(
                f"{name}-email-{subscription_name(email)}", topic=topic.arn, protocol="email", endpoint=email,
                opts=pulumi.ResourceOptions(parent=self, aliases=aliases))
        self.topic_arn = topic.arn
        self.identity = iam.pod_identity_role(
            f"{name}-alertmanager", cluster_name=args.cluster_name, namespace=MONITORING_NAMESPACE,
            service_account=ALERTMANAGER_SERVICE_ACCOUNT, policy=topic.arn.apply(publish_policy),
            partition=identity.partition, tags=identity.tags, opts=child)
        self.register_outputs({"topicArn": self.topic_arn})
