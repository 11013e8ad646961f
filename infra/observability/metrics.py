"""Metrics: kube-prometheus-stack (Prometheus Operator, Prometheus, Alertmanager, Grafana,
kube-state-metrics, node-exporter) in its own namespace, and dcgm-exporter on GPU nodes.

Installed with `helm.v4.Chart`, so previews show every object. v4 runs no Helm hooks, so the
operator's admission webhooks (whose certificates hook Jobs would make) are off: the rules
the program ships are checked offline with promtool instead. Nothing is exposed outside the
cluster: Grafana and Prometheus are ClusterIP Services, reached with `kubectl port-forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.compute.placement import ACCELERATOR_LABEL, GPU_TOLERATION, POOL_LABEL
from infra.observability.alerting import ALERTMANAGER_SERVICE_ACCOUNT, MONITORING_NAMESPACE
from infra.platform import helm
from infra.platform.helm import container_resources as resources
from infra.platform.storage import BLOCK_STORAGE_CLASS
from infra.settings import ObservabilitySettings

# Names of the chart's objects: fullnameOverride "monitoring" → monitoring-prometheus, ...
FULLNAME = "monitoring"
GRAFANA_ADMIN_SECRET = "grafana-admin"
# EKS runs the control plane: these components cannot be scraped, and their rules would only alert.
CONTROL_PLANE = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")
UNUSED_RULES = ("etcd", "kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "kubeProxy",
                "windows")


@dataclass(frozen=True)
class MetricsStackArgs:
    observability: ObservabilitySettings
    region: str
    system_pool: str  # where Prometheus, Alertmanager, Grafana and the operator run
    has_gpu_pool: bool  # GPU metrics (dcgm-exporter) only with one
    alert_topic_arn: pulumi.Input[str]
    # Children do not inherit a component's depends_on.
    wait_for: Sequence[pulumi.Resource] = ()


def alertmanager_config(topic_arn: pulumi.Input[str], region: str) -> dict[str, Any]:
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "sns", "group_by": ["alertname", "namespace"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            # The chart's always-firing heartbeat and its inhibitor are not for people.
            "routes": [{"matchers": ['alertname = "Watchdog"'], "receiver": "null"},
                       {"matchers": ['alertname = "InfoInhibitor"'], "receiver": "null"}],
        },
        "receivers": [
            {"name": "null"},
            {"name": "sns", "sns_configs": [{
                "topic_arn": topic_arn, "sigv4": {"region": region}, "send_resolved": True,
                "subject": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}',
            }]},
        ],
    }


def stack_values(args: MetricsStackArgs) -> dict[str, Any]:
    observability = args.observability
    system = {POOL_LABEL: args.system_pool}
    everywhere = [{"operator": "Exists"}]  # node-level agents run on every node, GPU nodes included
    return {
        "fullnameOverride": FULLNAME,
        "crds": {"enabled": True},
        "defaultRules": {"rules": dict.fromkeys(UNUSED_RULES, False)},
        **{component: {"enabled": False} for component in CONTROL_PLANE},
        "windowsMonitoring": {"enabled": False},
        "prometheusOperator": {
            "admissionWebhooks": {"enabled": False},
            "nodeSelector": system,
            "resources": resources("50m", "128Mi", "256Mi"),
            "prometheusConfigReloader": {"resources": resources("10m", "32Mi", "64Mi")},
        },
        "prometheus": {"prometheusSpec": {
            "retention": f"{observability.prometheus_retention_days}d",
            # Leave a tenth of the volume free: Prometheus stops writing when it is full.
            "retentionSize": f"{int(observability.prometheus_storage_gib * 0.9)}GB",
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": BLOCK_STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{observability.prometheus_storage_gib}Gi"}}}}},
            # Select every ServiceMonitor, PodMonitor and rule in the cluster, not only the chart's own.
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "nodeSelector": system,
            "resources": resources("200m", "1Gi", "2Gi"),
        }},
        "alertmanager": {
            "serviceAccount": {"create": True, "name": ALERTMANAGER_SERVICE_ACCOUNT},
            "config": alertmanager_config(args.alert_topic_arn, args.region),
            "alertmanagerSpec": {"nodeSelector": system, "resources": resources("20m", "64Mi", "128Mi")},
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "service": {"type": "ClusterIP"},
            "nodeSelector": system,
            "resources": resources("50m", "128Mi", "256Mi"),
            "sidecar": {"resources": resources("10m", "64Mi", "128Mi")},
        },
        "kube-state-metrics": {"nodeSelector": system, "resources": resources("20m", "64Mi", "256Mi")},
        "prometheus-node-exporter": {"tolerations": everywhere, "resources": resources("20m", "32Mi", "64Mi")},
    }


def dcgm_values() -> dict[str, Any]:
    return {
        # GPU nodes only: our GPU pools carry the accelerator label and the GPU taint.
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "Exists"}]}]}}},
        "tolerations": [dict(GPU_TOLERATION)],
        "resources": resources("50m", "256Mi", "512Mi"),
        "serviceMonitor": {"enabled": True, "interval": "15s"},
    }


class MetricsStack(pulumi.ComponentResource):
    stack_chart: k8s.helm.v4.Chart
    grafana_admin_password: pulumi.Output[str]

    def __init__(self, name: str, args: MetricsStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:observability:MetricsStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": MONITORING_NAMESPACE}, opts=child)
        password = random.RandomPassword(f"{name}-grafana-admin", length=32, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": MONITORING_NAMESPACE},
            string_data={"admin-user": "admin", "admin-password": password.result},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]))
        in_namespace = [*args.wait_for, namespace, secret]
        self.stack_chart = helm.chart("kube-prometheus-stack", stack_values(args),
                                      in_namespace, child, namespace=MONITORING_NAMESPACE)
        if args.has_gpu_pool:
            # Its ServiceMonitor needs the operator's CRDs.
            helm.chart("dcgm-exporter", dcgm_values(), [*in_namespace, self.stack_chart], child,
                       namespace=MONITORING_NAMESPACE)
        self.grafana_admin_password = pulumi.Output.secret(password.result)
        self.register_outputs({})
