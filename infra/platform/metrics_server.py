"""metrics-server: CPU and memory of pods for HorizontalPodAutoscalers.

Installed with `helm.v4.Chart` (no hooks; per-object diffs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.node_pools import POOL_LABEL
from infra.platform import helm
from infra.settings import StackSettings


@dataclass(frozen=True)
class MetricsServerArgs:
    settings: StackSettings
    wait_for: Sequence[pulumi.Resource] = ()


class MetricsServer(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:MetricsServer", name, None, opts)
        helm.chart("metrics-server", {
            "replicas": 2,
            "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
            "nodeSelector": {POOL_LABEL: args.settings.system_pool},
        }, args.wait_for, pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
