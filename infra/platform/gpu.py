"""NVIDIA device plugin: advertises each GPU node's GPUs as the `nvidia.com/gpu` resource.

AL2023 NVIDIA AMIs carry the driver but not the plugin. Only declared when the stack has a
GPU pool. The plugin is one DaemonSet, declared here rather than through its Helm chart:
chart 0.20.0 always renders a second, privileged and hostPID MPS control-daemon DaemonSet
(no value turns it off), which this stack never uses, plus RBAC only its config manager
needs. A DaemonSet of our own is typed, validated and diffed like every other object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.placement import ACCELERATOR_LABEL, GPU_TOLERATION
from infra.platform import helm
from infra.versions import NVIDIA_DEVICE_PLUGIN_IMAGE

APP_NAME = "nvidia-device-plugin"
# Where kubelet looks for device plugins' sockets.
DEVICE_PLUGINS_DIR = "/var/lib/kubelet/device-plugins"


@dataclass(frozen=True)
class GpuSupportArgs:
    wait_for: Sequence[pulumi.Resource] = ()


def device_plugin_pod() -> k8s.core.v1.PodSpecArgsDict:
    return {
        # On GPU nodes only: our GPU pools carry the accelerator label (the chart's default affinity
        # needs Node Feature Discovery labels, which EKS nodes do not have), and tolerate their taint.
        "affinity": {"node_affinity": {"required_during_scheduling_ignored_during_execution": {
            "node_selector_terms": [{"match_expressions": [{"key": ACCELERATOR_LABEL, "operator": "Exists"}]}]}}},
        "tolerations": [GPU_TOLERATION],
        # Without it the node's GPUs are invisible to the scheduler: never evict it for other pods.
        "priority_class_name": "system-node-critical",
        "automount_service_account_token": False,  # the plugin talks to kubelet, not to the API server
        "containers": [{
            "name": APP_NAME,
            "image": NVIDIA_DEVICE_PLUGIN_IMAGE,
            "command": ["nvidia-device-plugin"],
            "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                    {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"}],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "security_context": {"allow_privilege_escalation": False, "capabilities": {"drop": ["ALL"]}},
            "volume_mounts": [{"name": "device-plugins", "mount_path": DEVICE_PLUGINS_DIR}],
        }],
        "volumes": [{"name": "device-plugins", "host_path": {"path": DEVICE_PLUGINS_DIR, "type": "Directory"}}],
    }


class GpuSupport(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuSupportArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:platform:GpuSupport", name, None, opts)
        labels = {"app.kubernetes.io/name": APP_NAME}
        k8s.apps.v1.DaemonSet(
            f"{name}-device-plugin",
            metadata={"name": APP_NAME, "namespace": helm.NAMESPACE, "labels": labels},
            spec={
                "selector": {"match_labels": labels},
                "update_strategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": labels}, "spec": device_plugin_pod()},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for)),
        )
        self.register_outputs({})
