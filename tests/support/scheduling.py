"""Where a pod could run: the scheduler's node selection rules (nodeSelector, required node
affinity, taints and tolerations) over the nodes each node pool really produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.compute.placement import POOL_LABEL
from review.records import Synthesis

# Labels kubelet and EKS put on every node of a managed node group (x86_64 AL2023).
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@dataclass(frozen=True)
class Node:
    pool: str
    labels: dict[str, str]
    taints: list[dict[str, str]]


def pool_nodes(synthesis: Synthesis) -> list[Node]:
    """A node of each node group, labelled and tainted as EKS would (pool names come from labels)."""
    region = synthesis.one("pulumi:providers:aws").inputs["region"]
    nodes = []
    for group in synthesis.of_type("aws:eks/nodeGroup:NodeGroup"):
        inputs = group.inputs
        labels = {
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "eks.amazonaws.com/nodegroup": str(inputs.get("nodeGroupName", group.name)),
            "eks.amazonaws.com/capacityType": inputs["capacityType"],
            "node.kubernetes.io/instance-type": inputs["instanceTypes"][0],
            "topology.kubernetes.io/region": region,
            **inputs.get("labels", {}),
        }
        taints = [{**taint, "effect": TAINT_EFFECTS[taint["effect"]]} for taint in inputs.get("taints", [])]
        nodes.append(Node(pool=labels[POOL_LABEL], labels=labels, taints=taints))
    return nodes


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload (Deployment, DaemonSet, StatefulSet, Job, CronJob); for the
    operator's Prometheus and Alertmanager, their spec, which carries the same scheduling fields."""
    spec = obj.get("spec") or {}
    if obj.get("kind") in ("Prometheus", "Alertmanager"):
        return spec
    template = spec.get("template") or ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
    return (template or {}).get("spec")


def _expression_matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt") and key in labels:
        return (int(labels[key]) > int(values[0])) if operator == "Gt" else (int(labels[key]) < int(values[0]))
    return False


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions); an empty or missing one selects everything."""
    selector = selector or {}
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items()) and all(
        _expression_matches(expression, labels) for expression in selector.get("matchExpressions") or [])


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint["effect"]:
            continue
        if toleration.get("operator") == "Exists" and toleration.get("key") in (None, "", taint["key"]):
            return True
        if toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable(pod: dict[str, Any], node: Node) -> bool:
    if not all(node.labels.get(key) == value for key, value in (pod.get("nodeSelector") or {}).items()):
        return False
    required = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms and not any(all(_expression_matches(expression, node.labels)
                             for expression in term.get("matchExpressions") or []) for term in terms):
        return False
    return all(tolerates(pod.get("tolerations") or [], taint) for taint in node.taints
               if taint["effect"] in ("NoSchedule", "NoExecute"))


def pools_for(pod: dict[str, Any], nodes: list[Node]) -> set[str]:
    return {node.pool for node in nodes if schedulable(pod, node)}
