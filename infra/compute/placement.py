"""How pods find their nodes: the labels every pool's nodes carry, the GPU taint and the one
toleration for it, and the spread of replicas over zones and nodes. Node groups, the platform's
add-ons, the observability agents and the workload all take these from here."""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s

from infra.settings import NodePoolSettings

POOL_LABEL = "model-serving/pool"
# Read by the cluster autoscaler to treat a node as a GPU node before the device plugin
# reports its GPUs (https://github.com/kubernetes/autoscaler/blob/master/cluster-autoscaler/cloudprovider/aws/README.md).
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
# GPU nodes repel every pod that does not tolerate this taint (CPU-only pods would waste the GPUs).
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION: k8s.core.v1.TolerationArgsDict = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# EKS's API spells Kubernetes' taint effects in its own enum (CreateNodegroup, Taint.effect).
EKS_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
ROOT_DEVICE = "/dev/xvda"  # AL2023 EKS AMIs boot from this device (node groups' and Karpenter's root volume)
# Replicas go across zones first, then across nodes.
SPREAD_TOPOLOGY_KEYS = ("topology.kubernetes.io/zone", "kubernetes.io/hostname")


def node_labels(pool_name: str, pool: NodePoolSettings) -> dict[str, str]:
    labels = {POOL_LABEL: pool_name}
    if pool.accelerator is not None:
        labels[ACCELERATOR_LABEL] = pool.accelerator
    return labels


def spread_over_zones_and_nodes(pod_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Replicas in different zones, then on different nodes, as Kubernetes spells the constraint
    (chart values take it as is; Pulumi passes camelCase keys through unchanged). Soft, so a zone
    short of nodes delays nothing; the selector must match the pods' own labels to have effect."""
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(pod_labels)}}
            for key in SPREAD_TOPOLOGY_KEYS]
