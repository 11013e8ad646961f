"""The stacks every layer is checked against: the committed ones and the variants that switch
on what they leave off (a GPU model behind HTTPS, the newer Kubernetes version)."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from review.records import Synthesis
from review.synth import synthesize

STACKS = ("dev", "staging", "prod")
CERTIFICATE_PROD = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
# Each committed stack as it was before Karpenter: its workload pools EKS managed node groups scaled by
# the cluster autoscaler (nodeProvisioner cluster-autoscaler, the node groups' sizes of that time).
AUTOSCALED: dict[str, dict[str, Any]] = {
    stack: {"nodeProvisioner": "cluster-autoscaler", "systemPool": {}, "nodePools": pools}
    for stack, pools in {
        "dev": {"cpu": {"instanceTypes": ["m7i.large", "m6i.large"], "capacityType": "SPOT", "minSize": 2,
                        "maxSize": 4},
                "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "minSize": 0, "maxSize": 1}},
        "staging": {"cpu": {"instanceTypes": ["m7i.large"], "minSize": 2, "maxSize": 6},
                    "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "minSize": 0, "maxSize": 2}},
        "prod": {"cpu": {"instanceTypes": ["m7i.xlarge"], "minSize": 3, "maxSize": 12, "maxUnavailablePercentage": 20},
                 "gpu": {"instanceTypes": ["g5.2xlarge"], "gpu": True, "minSize": 0, "maxSize": 4, "diskSizeGib": 100}},
    }.items()
}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{stack: (stack, {}) for stack in STACKS},
    "prod-gpu-https": ("prod", {"modelService": {
        "pool": "gpu", "gpus": 1, "model": "examples/xgboost/model.ubj", "replicas": 2, "minReplicas": 2,
        "maxReplicas": 4, "certificateArn": CERTIFICATE_PROD}}),
    "staging-1.36": ("staging", {"kubernetesVersion": "1.36"}),
    # The other provisioner, so that every check of the charts covers both.
    "prod-cluster-autoscaler": ("prod", AUTOSCALED["prod"]),
}
# dev with one CPU pool and no GPU pool (the same overrides everywhere, so synthesized_with runs it once).
CPU_ONLY: dict[str, Any] = {"nodePools": {"cpu": {"instanceFamilies": ["m7i"], "limits": {"cpu": 8}}}}


@functools.cache
def _synthesized(variant: str) -> Synthesis:
    stack, overrides = VARIANTS[variant]
    return synthesize(stack, overrides)


def synthesized_variant(variant: str) -> Synthesis:
    """A variant's synthesis: the program runs once per test session (it is deterministic), and
    each caller gets its own copy, so no test can change what another one sees."""
    return copy.deepcopy(_synthesized(variant))


def synthesized(stack: str) -> Synthesis:
    """A committed stack's synthesis (see synthesized_variant)."""
    return synthesized_variant(stack)


def autoscaled(stack: str) -> Synthesis:
    """A committed stack with nodeProvisioner cluster-autoscaler and its former node groups."""
    return synthesized_with(stack, AUTOSCALED[stack])


@functools.cache
def _synthesized_with(stack: str, overrides_json: str) -> Synthesis:
    return synthesize(stack, json.loads(overrides_json))


def synthesized_with(stack: str, overrides: dict[str, Any]) -> Synthesis:
    """A stack with config overrides, synthesized once per test session (see synthesized_variant)."""
    return copy.deepcopy(_synthesized_with(stack, json.dumps(overrides, sort_keys=True)))


def lookups(synthesis: Synthesis, token: str) -> list[dict[str, Any]]:
    """The invokes of `token` the program made, each {"args": ..., "provider": ...}."""
    return [{"args": invoke["args"], "provider": invoke["provider"]} for invoke in synthesis.invokes
            if invoke["token"] == token]
