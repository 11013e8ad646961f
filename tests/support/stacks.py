"""The stacks every layer is checked against: the committed ones and the variants that switch
on what they leave off (a GPU model behind HTTPS, the newer Kubernetes version)."""

from __future__ import annotations

import functools
from typing import Any

from infra.synth import Synthesis, synthesize

STACKS = ("dev", "staging", "prod")
CERTIFICATE_PROD = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{stack: (stack, {}) for stack in STACKS},
    "prod-gpu-https": ("prod", {"modelService": {
        "pool": "gpu", "gpus": 1, "replicas": 1, "minReplicas": 1, "maxReplicas": 2,
        "certificateArn": CERTIFICATE_PROD}}),
    "staging-1.36": ("staging", {"kubernetesVersion": "1.36"}),
}


@functools.cache
def synthesized_variant(variant: str) -> Synthesis:
    """Each variant synthesized once per test session (the program is deterministic). Read only."""
    stack, overrides = VARIANTS[variant]
    return synthesize(stack, overrides)
