"""What the program needs to know about EC2 instance types, keyed by family."""

from __future__ import annotations

import re

# NVIDIA GPU families and the accelerator they carry. The value becomes the node label
# k8s.amazonaws.com/accelerator, which tells the cluster autoscaler a node's GPUs are
# still coming up while the device plugin starts, so it does not scale out twice
# (https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md#special-note-on-gpu-instances).
NVIDIA_GPU_FAMILIES: dict[str, str] = {
    "g4dn": "nvidia-tesla-t4",
    "g5": "nvidia-a10g",
    "g6": "nvidia-l4",
    "g6e": "nvidia-l40s",
    "p3": "nvidia-tesla-v100",
    "p4d": "nvidia-a100",
    "p4de": "nvidia-a100",
    "p5": "nvidia-h100",
    "p5e": "nvidia-h200",
}

INSTANCE_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_FAMILY_PATTERN = re.compile(r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z-]*)$")


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def accelerator(instance_type: str) -> str | None:
    """The NVIDIA accelerator of an instance type, or None for a type without one."""
    return NVIDIA_GPU_FAMILIES.get(family(instance_type))


def is_arm64(instance_type: str) -> bool:
    """Graviton families carry a 'g' among the attribute letters after the generation (m7g, c7gn, g5g)."""
    match = _FAMILY_PATTERN.match(family(instance_type))
    return bool(match and "g" in match["attributes"])
