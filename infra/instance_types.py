"""What the program needs to know about EC2 instance types, keyed by family."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache

# The SDK's enum lists every EC2 instance type (about 1,400) and ships offline; importing
# just the enum module keeps settings validation fast (pulumi_aws.ec2 itself is large).
from pulumi_aws.ec2._enums import InstanceType

# NVIDIA GPU families and the accelerator they carry. The value becomes the node label
# k8s.amazonaws.com/accelerator, which tells the cluster autoscaler a node's GPUs are
# still coming up while the device plugin starts, so it does not scale out twice
# (https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/FAQ.md#special-note-on-gpu-instances).
# Left out on purpose: g4ad (AMD Radeon), g5g and p6e-gb200 (Arm hosts), and g2/g3/p2
# (Kepler and Maxwell GPUs the AL2023 NVIDIA driver no longer supports).
NVIDIA_GPU_FAMILIES: dict[str, str] = {
    "g4dn": "nvidia-tesla-t4",
    "g5": "nvidia-a10g",
    "g6": "nvidia-l4",
    "g6e": "nvidia-l40s",
    "g6f": "nvidia-l4",  # a fraction of an L4
    "gr6": "nvidia-l4",
    "gr6f": "nvidia-l4",
    "g7": "nvidia-rtx-pro-4500",
    "g7e": "nvidia-rtx-pro-6000",
    "p3": "nvidia-tesla-v100",
    "p3dn": "nvidia-tesla-v100",
    "p4d": "nvidia-a100",
    "p4de": "nvidia-a100",
    "p5": "nvidia-h100",
    "p5e": "nvidia-h200",
    "p5en": "nvidia-h200",
    "p6-b200": "nvidia-b200",
    "p6-b300": "nvidia-b300",
}
# Arm families whose names do not follow the 'g' attribute convention below.
ARM64_FAMILIES = frozenset({"p6e-gb200"})

_FAMILY_PATTERN = re.compile(r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z]*)(-[a-z0-9]+)?$")


@cache
def known_types() -> frozenset[str]:
    return frozenset(member.value for member in InstanceType)


@cache
def known_families() -> frozenset[str]:
    return frozenset(family(instance_type) for instance_type in known_types())


def closest(name: str, known: frozenset[str], cutoff: float) -> str | None:
    """The known type, family or category an operator most likely meant (m7i.lagre → m7i.large,
    m7j → m7i); the shorter the names, the lower the cutoff a likely typo needs."""
    matches = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def family(instance_type: str) -> str:
    """m7i.large → m7i; a family name is its own family."""
    return instance_type.split(".", 1)[0]


def category(name: str) -> str:
    """The letters before the generation, as Karpenter's karpenter.k8s.aws/instance-category label
    has them: m7i.large → m, inf2 → inf, p6-b200 → p."""
    match = _FAMILY_PATTERN.match(family(name))
    return match["series"] if match else family(name)


@cache
def known_categories() -> frozenset[str]:
    return frozenset(category(name) for name in known_families())


# Categories whose families carry NVIDIA GPUs: a CPU pool that admitted them would launch GPU nodes.
GPU_CATEGORIES = frozenset(category(name) for name in NVIDIA_GPU_FAMILIES)


@dataclass(frozen=True)
class Figures:
    vcpu: int
    memory_gib: int
    gpus: int


# What each instance type the repository prices holds (https://aws.amazon.com/ec2/instance-types/):
# Karpenter pools' limits are checked against them, the cost estimate fills the limits with them, and
# the tests schedule pods onto them. A type missing here is one review/prices.json does not price either.
FIGURES: dict[str, Figures] = {
    "c7i.2xlarge": Figures(8, 16, 0),
    "c7i.large": Figures(2, 4, 0),
    "g4dn.xlarge": Figures(4, 16, 1),
    "g5.2xlarge": Figures(8, 32, 1),
    "g5.xlarge": Figures(4, 16, 1),
    "g6.xlarge": Figures(4, 16, 1),
    "m6i.large": Figures(2, 8, 0),
    "m6i.xlarge": Figures(4, 16, 0),
    "m7i.2xlarge": Figures(8, 32, 0),
    "m7i.large": Figures(2, 8, 0),
    "m7i.xlarge": Figures(4, 16, 0),
}


def admitted(types: list[str], families: list[str], categories: list[str]) -> list[str]:
    """The instance types with known figures a pool admits: its explicit types, or those of its
    families and categories (both apply when both are given, as Karpenter ANDs requirements)."""
    if types:
        return [t for t in types if t in FIGURES]
    return sorted(t for t in FIGURES if (not families or family(t) in families)
                  and (not categories or category(t) in categories))


def accelerator(instance_type: str) -> str | None:
    """The NVIDIA accelerator of an instance type (or family), or None for one without."""
    return NVIDIA_GPU_FAMILIES.get(family(instance_type))


def is_arm64(instance_type: str) -> bool:
    """Graviton families carry a 'g' among the attribute letters after the generation (m7g, c7gn, g5g);
    an instance type or a family name."""
    name = family(instance_type)
    match = _FAMILY_PATTERN.match(name)
    return name in ARM64_FAMILIES or bool(match and "g" in match["attributes"])
