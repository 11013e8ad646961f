"""The alert rules, as data: what the PrometheusRule object carries and what promtool tests.

Each alert links to its section of docs/runbook.md (the kube-prometheus mixins' habit of a
`runbook_url` on every alert). Thresholds that are a matter of taste are named here; the
latency and queue-wait SLOs come from the stack's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.observability.queries import (
    INFERENCE,
    INFLIGHT,
    MODEL,
    QUEUE_WAIT,
    REQUEST_DURATION,
    available_replicas,
    quantile,
    status_ratio,
)
from infra.workload.contract import APP_NAME

RUNBOOK = "https://github.com/model-serving/model-serving/blob/main/docs/runbook.md"
WINDOW = "5m"
# More than 1 % of requests answered with a 5xx over five minutes.
ERROR_RATIO = 0.01
# Requests in flight in one pod: beyond what its workers batch promptly, requests queue.
SATURATION_INFLIGHT_PER_POD = 64
# Longer than the cluster autoscaler gives a new node (max-node-provision-time 15m) plus margin (Karpenter
# gives up on a node that has not registered after 15 minutes too: its registration TTL).
GPU_PENDING_FOR = "20m"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description,
                            "runbook_url": f"{RUNBOOK}#{self.name.lower()}"},
        }


def model_alerts(latency_slo_s: float, queue_wait_slo_s: float, workload_kind: str) -> list[Alert]:
    return [
        Alert("ModelEndpointErrorRatioHigh",
              f"{status_ratio('5', WINDOW)} > {ERROR_RATIO}",
              "5m", "critical", "The model endpoint answers more than 1% of requests with a server error",
              "Server errors are above 1% of requests over the last 5 minutes; see the Errors panel."),
        Alert("ModelEndpointLatencyHigh", f"{quantile(0.99, REQUEST_DURATION, INFERENCE, WINDOW)}"
              f" > {latency_slo_s:g}", "10m", "warning",
              f"p99 inference latency is above the {latency_slo_s * 1000:g} ms objective",
              "Inference is slower than its objective for 10 minutes; see the Inference latency panel."),
        Alert("ModelQueueWaitHigh", f"{quantile(0.99, QUEUE_WAIT, MODEL, WINDOW)}"
              f" > {queue_wait_slo_s:g}", "10m", "warning",
              f"Requests wait more than {queue_wait_slo_s * 1000:g} ms for their batch (p99)",
              "The pods are busier than their batching absorbs; see the Queue wait panel."),
        Alert("ModelEndpointSaturated",
              f"max(sum by (pod) ({INFLIGHT}{{{MODEL}}})) > {SATURATION_INFLIGHT_PER_POD}",
              "10m", "warning", "A model pod holds more requests in flight than it can batch promptly",
              "Clients send faster than a pod answers; see Requests in flight per pod."),
        Alert("ModelNoReadyReplicas",
              f"{available_replicas(workload_kind)} < 1",
              "2m", "critical", "No model pod is ready: the endpoint answers nothing",
              f"The {workload_kind} has had no available replica for 2 minutes."),
    ]


def release_alerts() -> list[Alert]:
    """What a canary release tells the on-call engineer (Argo Rollouts' own series)."""
    return [
        Alert("ModelReleaseAborted", f'max(rollout_info{{{MODEL},name="{APP_NAME}",phase="Degraded"}}) > 0',
              "0m", "warning", "A model release was aborted: traffic is back on the previous revision",
              "The canary failed its analysis or did not become ready; the program still declares it."),
    ]


def scaling_alerts() -> list[Alert]:
    return [
        Alert("ModelScalerErrors", f"sum(increase(keda_scaler_detail_errors_total{{{MODEL}}}[10m])) > 0",
              "10m", "warning", "The model's autoscaler cannot read its traffic triggers",
              "KEDA's queries fail: the replica count holds at its fallback until they answer again."),
    ]


def workload_alerts() -> list[Alert]:
    return [
        Alert("ModelPodCrashLooping",
              f'max_over_time(kube_pod_container_status_waiting_reason{{{MODEL},reason="CrashLoopBackOff"}}[5m])'
              " >= 1", "10m", "warning", "A model pod is crash-looping",
              "Pod {{ $labels.pod }} keeps restarting."),
        Alert("ModelPodOOMKilled",
              f'(kube_pod_container_status_last_terminated_reason{{{MODEL},reason="OOMKilled"}} == 1)'
              f" and on (namespace, pod, container)"
              f" (increase(kube_pod_container_status_restarts_total{{{MODEL}}}[15m]) > 0)",
              "0m", "warning", "A model pod ran out of memory", "Pod {{ $labels.pod }} was OOM-killed."),
        Alert("ModelAutoscalerAtMaximum",
              f"kube_horizontalpodautoscaler_status_current_replicas{{{MODEL}}}"
              f" >= on (namespace, horizontalpodautoscaler) kube_horizontalpodautoscaler_spec_max_replicas{{{MODEL}}}",
              "15m", "warning", "The model's autoscaler is pinned at maxReplicas",
              "The HPA has run at its maximum for 15 minutes: demand may exceed the configured capacity."),
    ]


# Karpenter's errors from EC2 and the rest of AWS, less the two it handles itself: an instance already
# gone while it terminates one (https://karpenter.sh/v1.14/reference/metrics/), and no capacity for one
# offering, after which it tries the next (spot falls back to on-demand).
KARPENTER_HANDLED_ERRORS = "NodeClaimNotFoundError|InsufficientCapacityError"


def provisioner_alert(karpenter: bool) -> Alert:
    """The node provisioner's own errors: Karpenter's, or the cluster autoscaler's."""
    if karpenter:
        return Alert("KarpenterCloudProviderErrors",
                     f'sum(increase(karpenter_cloudprovider_errors_total{{error!~"{KARPENTER_HANDLED_ERRORS}"}}[15m]))'
                     " > 0", "5m", "warning", "Karpenter's calls to AWS fail",
                     "Nodes may not be launched or removed; see Karpenter's log.")
    return Alert("ClusterAutoscalerErrors", "sum(increase(cluster_autoscaler_errors_total[15m])) > 0",
                 "5m", "warning", "The cluster autoscaler reports errors",
                 "Nodes may not be added or removed; see the autoscaler's log.")


def platform_alerts(karpenter: bool = False) -> list[Alert]:
    return [
        Alert("GpuPodPendingTooLong",
              '(sum by (namespace, pod) (kube_pod_status_phase{phase="Pending"}) > 0)'
              ' and on (namespace, pod) (sum by (namespace, pod)'
              ' (kube_pod_container_resource_requests{resource="nvidia_com_gpu"}) > 0)',
              GPU_PENDING_FOR, "warning", "A pod asking for a GPU has been pending longer than a GPU node takes",
              "Pod {{ $labels.namespace }}/{{ $labels.pod }} is still pending."),
        Alert("NodeNotReady", 'kube_node_status_condition{condition="Ready",status="true"} == 0',
              "10m", "warning", "A node is not ready", "Node {{ $labels.node }} has not been ready for 10 minutes."),
        provisioner_alert(karpenter),
    ]


def rule_groups(latency_slo_s: float, queue_wait_slo_s: float, workload_kind: str,
                karpenter: bool = False) -> list[dict[str, Any]]:
    groups = [
        {"name": "model-endpoint", "rules": [a.rule() for a in model_alerts(latency_slo_s, queue_wait_slo_s,
                                                                             workload_kind)]},
        {"name": "model-workload", "rules": [a.rule() for a in [*workload_alerts(), *scaling_alerts()]]},
        {"name": "platform", "rules": [a.rule() for a in platform_alerts(karpenter)]},
    ]
    if workload_kind == "Rollout":
        groups.append({"name": "model-release", "rules": [a.rule() for a in release_alerts()]})
    return groups
