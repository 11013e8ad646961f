"""Traffic-driven scaling: KEDA, which turns the model's ScaledObject (in-flight requests and queue
wait from the in-cluster Prometheus, CPU as a floor) into the HorizontalPodAutoscaler it manages.

Installed with `helm.v4.Chart` (no hooks: the operator makes and rotates its own webhook and
metrics-API certificates). Its RBAC may scale only Deployments (built in) and Argo Rollouts: the
chart's default grants `get` on every resource of every API group, Secrets included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.compute.placement import POOL_LABEL
from infra.platform import helm

# What a ScaledObject of this stack may scale besides the built-in Deployment and StatefulSet. The
# chart writes `kind` into its ClusterRole as the resource (`<kind>/scale`), and RBAC matches the
# lowercase plural resource name, so it is "rollouts", not the kind (the chart's own example is wrong).
SCALED_REF_KINDS = [{"apiGroup": "argoproj.io", "kind": "rollouts"}]
# The chart's operator Service (release name keda), where its metrics are exposed.
OPERATOR_SERVICE_LABELS = {"app.kubernetes.io/name": "keda-operator"}
METRICS_PORT = "metrics"


@dataclass(frozen=True)
class KedaArgs:
    system_pool: str  # the pool that always has nodes
    wait_for: Sequence[pulumi.Resource] = ()


class Keda(pulumi.ComponentResource):
    chart: pulumi.Resource

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:platform:Keda", name, None, opts)
        self.chart = helm.chart("keda", {
            "rbac": {"enabledCustomScaledRefKinds": True, "scaledRefKinds": SCALED_REF_KINDS},
            # keda_scaler_detail_errors_total and friends; scraped by the model's monitoring.
            "prometheus": {"operator": {"enabled": True}},
            "nodeSelector": {POOL_LABEL: args.system_pool},
            "priorityClassName": helm.CLUSTER_CRITICAL,
            "resources": {
                "operator": helm.container_resources("100m", "128Mi", "512Mi"),
                "metricServer": helm.container_resources("50m", "128Mi", "512Mi"),
                "webhooks": helm.container_resources("20m", "64Mi", "256Mi"),
            },
        }, args.wait_for, pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
