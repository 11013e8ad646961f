"""AccessLogs: the load balancer's access logs, in an S3 bucket of the stack's own.

Elastic Load Balancing writes them itself, as the region's ELB account
(https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html),
and supports only SSE-S3 encryption on the bucket. The bucket blocks public access, owns every
object, refuses plain HTTP and expires logs after the configured days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.identity import StackIdentity
from infra.workload.contract import ACCESS_LOG_PREFIX as PREFIX


@dataclass(frozen=True)
class AccessLogsArgs:
    identity: StackIdentity
    retention_days: int
    retain_data_on_destroy: bool
    account_id: str
    provider: aws.Provider


def bucket_policy(bucket_arn: str, elb_account_arn: str, account_id: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "LoadBalancerLogDelivery", "Effect": "Allow", "Principal": {"AWS": elb_account_arn},
         "Action": "s3:PutObject", "Resource": f"{bucket_arn}/{PREFIX}/AWSLogs/{account_id}/*"},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}, sort_keys=True)


class AccessLogs(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, args: AccessLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:observability:AccessLogs", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket=f"{identity.name}-{args.account_id}-alb-logs",
            # Logs are data: kept on destroy unless the stack says otherwise, like the volumes.
            force_destroy=not args.retain_data_on_destroy, tags=identity.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=identity.production,
                                        retain_on_delete=args.retain_data_on_destroy))
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-expiry", bucket=bucket.id, rules=[{
                "id": "expire-access-logs", "status": "Enabled", "filter": {"prefix": f"{PREFIX}/"},
                "expiration": {"days": args.retention_days}}], opts=child)
        elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(provider=args.provider))
        policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, elb_account.arn).apply(
                lambda values: bucket_policy(values[0], values[1], args.account_id)), opts=child)
        # The load balancer checks it may write before it turns logging on: name the bucket once the policy exists.
        self.bucket_name = pulumi.Output.all(bucket.bucket, policy.id).apply(lambda values: str(values[0]))
        self.register_outputs({"bucketName": self.bucket_name})
