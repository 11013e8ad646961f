"""What Prometheus and Grafana know about this stack: the model server's PodMonitor,
ServiceMonitors for the node provisioner (Karpenter or the cluster autoscaler), Argo Rollouts and
KEDA, the alert rules (a PrometheusRule) and the model-serving dashboard (a ConfigMap the Grafana sidecar provisions).
Created after the metrics stack: the custom resources need its CRDs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.observability.alert_rules import rule_groups
from infra.observability.alerting import MONITORING_NAMESPACE
from infra.observability.dashboard import dashboard_json
from infra.platform import argo_rollouts, helm, keda
from infra.settings import ObservabilitySettings
from infra.workload.contract import APP_NAME, METRICS_PATH, NAMESPACE, PORT_NAME, pod_labels

MONITORING_API = "monitoring.coreos.com/v1"
SCRAPE_INTERVAL = "15s"
# The autoscaler chart's Service (release cluster-autoscaler): its labels and metrics port.
AUTOSCALER_SERVICE_LABELS = {"app.kubernetes.io/instance": "cluster-autoscaler",
                             "app.kubernetes.io/name": "aws-cluster-autoscaler"}
AUTOSCALER_METRICS_PORT = "http"
# Karpenter's chart's Service (release karpenter): its labels and metrics port.
KARPENTER_SERVICE_LABELS = {"app.kubernetes.io/instance": "karpenter", "app.kubernetes.io/name": "karpenter"}
KARPENTER_METRICS_PORT = "http-metrics"
# The pod label that tells a revision's series apart (Argo Rollouts sets it on every pod it runs),
# copied onto every series the model's pods export, for canary analysis.
REVISION_POD_LABEL = "rollouts-pod-template-hash"
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"  # the chart's sidecar loads ConfigMaps with this label


@dataclass(frozen=True)
class ModelMonitoringArgs:
    identity: StackIdentity
    observability: ObservabilitySettings
    model_on_gpu: bool  # the dashboard's GPU panels show the model's own GPUs
    workload_kind: str  # Deployment or Rollout: which series say how many pods are ready
    karpenter: bool = False  # the node provisioner whose metrics and errors to watch (else the cluster autoscaler)
    wait_for: Sequence[pulumi.Resource] = ()


def model_pod_monitor(identity: StackIdentity) -> dict[str, object]:
    return {
        "apiVersion": MONITORING_API, "kind": "PodMonitor",
        "metadata": {"name": APP_NAME, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": pod_labels(identity)},
            "podTargetLabels": [REVISION_POD_LABEL],
            "podMetricsEndpoints": [{
                "port": PORT_NAME, "path": METRICS_PATH, "interval": SCRAPE_INTERVAL,
                # The server's own `endpoint` label (infer, ready...) must win over the target label
                # the operator adds (the port name); the server sets no other target label.
                "honorLabels": True,
            }],
        },
    }


def service_monitor(name: str, service_labels: dict[str, str], port: str, honor_labels: bool = False,
                    ) -> dict[str, object]:
    endpoint: dict[str, object] = {"port": port, "interval": SCRAPE_INTERVAL}
    if honor_labels:
        endpoint["honorLabels"] = True
    return {
        "apiVersion": MONITORING_API, "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": helm.NAMESPACE},
        "spec": {"selector": {"matchLabels": service_labels}, "endpoints": [endpoint]},
    }


def platform_service_monitors(karpenter: bool = False) -> dict[str, dict[str, object]]:
    """The add-ons' own metrics, by resource-name suffix. Argo's and KEDA's series carry the namespace
    of the workload they describe: it must win over the target's (kube-system), so honorLabels."""
    provisioner = (
        {"karpenter-monitor": service_monitor("karpenter", KARPENTER_SERVICE_LABELS, KARPENTER_METRICS_PORT)}
        if karpenter else
        {"autoscaler-monitor": service_monitor("cluster-autoscaler", AUTOSCALER_SERVICE_LABELS,
                                               AUTOSCALER_METRICS_PORT)})
    return {
        **provisioner,
        "rollouts-monitor": service_monitor("argo-rollouts", argo_rollouts.METRICS_SERVICE_LABELS,
                                            argo_rollouts.METRICS_PORT, honor_labels=True),
        "keda-monitor": service_monitor("keda-operator", keda.OPERATOR_SERVICE_LABELS, keda.METRICS_PORT,
                                        honor_labels=True),
    }


def prometheus_rule(observability: ObservabilitySettings, workload_kind: str,
                    karpenter: bool = False) -> dict[str, object]:
    return {
        "apiVersion": MONITORING_API, "kind": "PrometheusRule",
        "metadata": {"name": "model-serving", "namespace": MONITORING_NAMESPACE},
        "spec": {"groups": rule_groups(observability.latency_slo_ms / 1000, observability.queue_wait_slo_ms / 1000,
                                       workload_kind, karpenter)},
    }


class ModelMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:observability:ModelMonitoring", name, None, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for))
        for suffix, manifest in {"pod-monitor": model_pod_monitor(args.identity),
                                 **platform_service_monitors(args.karpenter),
                                 "alert-rules": prometheus_rule(args.observability, args.workload_kind,
                                                                args.karpenter)}.items():
            metadata = manifest["metadata"]
            k8s.apiextensions.CustomResource(
                f"{name}-{suffix}", api_version=MONITORING_API, kind=str(manifest["kind"]),
                metadata=metadata, spec=manifest["spec"], opts=after)  # type: ignore[arg-type]
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata={"name": "model-serving-dashboard", "namespace": MONITORING_NAMESPACE,
                      "labels": {GRAFANA_DASHBOARD_LABEL: "1"}},
            data={"model-serving.json": dashboard_json(with_gpu=args.model_on_gpu, workload_kind=args.workload_kind)},
            opts=after)
        self.register_outputs({})
