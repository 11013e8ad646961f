"""Scaling on traffic: the KEDA ScaledObject that owns the model workload's replica count.

Triggers, each read from the in-cluster Prometheus except the floor:
- requests in flight per pod against `targetInflightPerPod` (AverageValue: the total divided by
  the target, so the pods counted do not matter);
- the queue-wait p99 against `observability.queueWaitSloMs`, as a multiple of the replicas asked
  for (queries.queue_wait_pressure says why it is not a Value trigger);
- CPU against `targetCpuUtilization`, a floor for load the server's own metrics do not show.

Up fast (double within 30 s), down slowly (five minutes of stabilisation). When Prometheus cannot
answer, a trigger errors and KEDA's fallback holds the count: halfway from minReplicas to
maxReplicas, or the current count if that is higher. Every query answers a number when idle (0), so a quiet night
is not an error (KEDA's ignoreNullValues: false makes an empty result one).
"""

from __future__ import annotations

from typing import Any

from infra.observability import queries
from infra.settings import ModelServiceSettings, ObservabilitySettings
from infra.workload.contract import APP_NAME

KEDA_API = "keda.sh/v1alpha1"
# The HPA KEDA makes, by the kind of workload it scales. A Deployment's keeps the name of the plain
# HPA a stack deployed before KEDA has, which it takes over (transfer-hpa-ownership). A Rollout's
# has its own: during migration step 1 the Deployment's HPA still exists under the old name, and
# KEDA would otherwise rewrite it to point at the Rollout (and fight Pulumi over it). The alerts
# and the dashboard select HPAs by namespace, not by name.
HPA_NAMES = {"Deployment": APP_NAME, "Rollout": f"{APP_NAME}-rollout"}
TRANSFER_HPA_ANNOTATION = "scaledobject.keda.sh/transfer-hpa-ownership"
POLLING_INTERVAL_SECONDS = 15
# Failed reads in a row before the fallback count applies.
FALLBACK_AFTER_FAILURES = 3
SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30},
                         {"type": "Pods", "value": 2, "periodSeconds": 30}]}
SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
              "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
# The scale subresource each kind of workload offers KEDA.
TARGET_APIS = {"Deployment": "apps/v1", "Rollout": "argoproj.io/v1alpha1"}


def fallback_replicas(model: ModelServiceSettings) -> int:
    """Halfway from the fewest to the most pods, rounded up: blind, the count errs towards capacity."""
    return model.min_replicas + -(-(model.max_replicas - model.min_replicas) // 2)


def prometheus_trigger(name: str, query: str, threshold: str) -> dict[str, Any]:
    return {"type": "prometheus", "name": name, "metricType": "AverageValue", "metadata": {
        "serverAddress": queries.PROMETHEUS_URL, "query": query, "threshold": threshold,
        # An empty answer is an error (and the fallback), not a silent 0: every query here answers 0 when idle.
        "ignoreNullValues": "false"}}


def triggers(model: ModelServiceSettings, observability: ObservabilitySettings, workload_kind: str,
             ) -> list[dict[str, Any]]:
    cpu_floor = {"type": "cpu", "name": "cpu", "metricType": "Utilization",
                 "metadata": {"value": str(model.target_cpu_utilization)}}
    if not observability.enabled:
        return [cpu_floor]  # no Prometheus to ask: CPU alone, as a plain HPA would
    return [
        prometheus_trigger("inflight-requests", queries.inflight_requests(), str(model.target_inflight_per_pod)),
        prometheus_trigger("queue-wait", queries.queue_wait_pressure(observability.queue_wait_slo_ms / 1000,
                                                                     workload_kind), "1"),
        cpu_floor,
    ]


def scaled_object_spec(model: ModelServiceSettings, observability: ObservabilitySettings, workload_kind: str,
                       ) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": TARGET_APIS[workload_kind], "kind": workload_kind, "name": APP_NAME},
        "minReplicaCount": model.min_replicas,
        "maxReplicaCount": model.max_replicas,
        "pollingInterval": POLLING_INTERVAL_SECONDS,
        "advanced": {"horizontalPodAutoscalerConfig": {"name": HPA_NAMES[workload_kind],
                                                       "behavior": {"scaleUp": SCALE_UP, "scaleDown": SCALE_DOWN}}},
        "triggers": triggers(model, observability, workload_kind),
    }
    if observability.enabled:
        # KEDA accepts a fallback only beside an AverageValue trigger that is not CPU or memory.
        spec["fallback"] = {"failureThreshold": FALLBACK_AFTER_FAILURES,
                            "replicas": fallback_replicas(model),
                            "behavior": "currentReplicasIfHigher"}
    return spec
