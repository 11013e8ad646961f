"""Observability, on unless `observability.enabled` is false: alerts to an SNS topic, the metrics
stack, container logs, the load balancer's access logs, and (once the workload exists) its scrape
config, alert rules and dashboard. Off, this layer is the record `ABSENT`: it has no outputs and
watching a workload does nothing, so no caller branches on it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pulumi

from infra.observability.access_logs import AccessLogs, AccessLogsArgs
from infra.observability.alerting import Alerting, AlertingArgs
from infra.observability.logs import ContainerLogs, ContainerLogsArgs
from infra.observability.metrics import MetricsStack, MetricsStackArgs
from infra.observability.model_monitoring import ModelMonitoring, ModelMonitoringArgs
from infra.program.foundation import Foundation
from infra.program.platform import Platform
from infra.settings import StackSettings


@dataclass(frozen=True)
class Observability:
    # The bucket the load balancer writes its access logs to.
    access_log_bucket: pulumi.Output[str] | None = None
    # Stack outputs by name.
    outputs: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    # The workload's PodMonitor, rules and dashboard, declared once the workload exists.
    monitoring: ModelMonitoringArgs | None = None
    on_cluster: pulumi.ResourceOptions | None = None

    def watch(self, workload: Sequence[pulumi.Resource]) -> None:
        """Scrape, alert on and chart the workload (its custom resources need the metrics stack's
        CRDs, and the PodMonitor the workload's namespace)."""
        if self.monitoring is None:
            return
        ModelMonitoring("model-monitoring", replace(self.monitoring, wait_for=[*self.monitoring.wait_for, *workload]),
                        opts=self.on_cluster)


ABSENT = Observability()


def build(settings: StackSettings, foundation: Foundation, platform: Platform) -> Observability:
    if not settings.observability.enabled:
        return ABSENT
    identity, cluster, observability = settings.identity, foundation.cluster, settings.observability
    alerting = Alerting("alerting", AlertingArgs(identity=identity, alert_emails=observability.alert_emails,
                                                 cluster_name=cluster.name), opts=cluster.on_aws)
    metrics_stack = MetricsStack("monitoring", MetricsStackArgs(
        observability=observability, region=settings.region, system_pool=cluster.system_pool,
        has_gpu_pool=cluster.has_gpu_pool, alert_topic_arn=alerting.topic_arn,
        wait_for=[*platform.webhooks_ready, alerting.identity]), opts=cluster.on_cluster)
    container_logs = ContainerLogs("logs", ContainerLogsArgs(
        identity=identity, retention_days=observability.log_retention_days, cluster_name=cluster.name,
        wait_for=platform.webhooks_ready), opts=cluster.on_cluster)
    access_logs = AccessLogs("access-logs", AccessLogsArgs(
        identity=identity, retention_days=observability.access_log_retention_days,
        retain_data_on_destroy=settings.retain_data_on_destroy, account_id=cluster.account_id,
        provider=cluster.aws_provider), opts=cluster.on_aws)
    return Observability(
        access_log_bucket=access_logs.bucket_name,
        outputs={"grafanaAdminPassword": metrics_stack.grafana_admin_password, "alertTopicArn": alerting.topic_arn,
                 "containerLogGroup": container_logs.log_group_name,
                 "accessLogBucket": access_logs.bucket_name},
        monitoring=ModelMonitoringArgs(identity=identity, observability=observability,
                                       model_on_gpu=settings.model_device == "cuda",
                                       workload_kind=settings.model_service.workload_kind,
                                       karpenter=cluster.karpenter, wait_for=[metrics_stack.stack_chart]),
        on_cluster=cluster.on_cluster)
