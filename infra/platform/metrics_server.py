"""metrics-server: CPU and memory of pods for HorizontalPodAutoscalers.

Installed with `helm.v4.Chart` (no hooks; per-object diffs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.compute.placement import POOL_LABEL, spread_over_zones_and_nodes
from infra.platform import helm

# The chart's pod labels for release name metrics-server.
POD_LABELS = {"app.kubernetes.io/name": "metrics-server", "app.kubernetes.io/instance": "metrics-server"}


@dataclass(frozen=True)
class MetricsServerArgs:
    system_pool: str  # the pool that always has nodes
    wait_for: Sequence[pulumi.Resource] = ()


class MetricsServer(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:MetricsServer", name, None, opts)
        helm.chart("metrics-server", {
            "replicas": 2,
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
            "topologySpreadConstraints": spread_over_zones_and_nodes(POD_LABELS),
            # The chart's own requests, plus a memory limit: its use grows with nodes and pods.
            "resources": helm.container_resources("100m", "200Mi", "500Mi"),
            "nodeSelector": {POOL_LABEL: args.system_pool},
        }, args.wait_for, pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
