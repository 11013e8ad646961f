"""NVIDIA device plugin: advertises each GPU node's GPUs as the `nvidia.com/gpu` resource.

AL2023 NVIDIA AMIs carry the driver but not the plugin. Installed with `helm.v4.Chart`
(no hooks; per-object diffs). Only declared when the stack has a GPU pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from infra.node_pools import ACCELERATOR_LABEL, GPU_RESOURCE
from infra.platform import helm


@dataclass(frozen=True)
class GpuSupportArgs:
    wait_for: Sequence[pulumi.Resource] = ()


class GpuSupport(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuSupportArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:GpuSupport", name, None, opts)
        helm.chart("nvidia-device-plugin", {
            # The chart's default affinity needs Node Feature Discovery labels, which EKS nodes do
            # not have; our GPU pools carry the accelerator label instead.
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": ACCELERATOR_LABEL, "operator": "Exists"}]}]}}},
            "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            "gfd": {"enabled": False},
        }, args.wait_for, pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
