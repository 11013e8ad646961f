"""Where a pod could run: the scheduler's node selection rules (nodeSelector, required node
affinity, taints and tolerations, resource requests) over the nodes each node pool really produces:
a managed node group's nodes as EKS labels them, a Karpenter NodePool's as Karpenter would launch them
(its template's labels and taints, the well-known labels of its requirements, the largest priced
instance type it admits within its limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.compute.placement import GPU_RESOURCE, POOL_LABEL
from infra.settings.fields import cpu_cores, memory_bytes
from review.cost import instance_spec, node_pool_instance_types, nodes_within_limits
from review.records import Synthesis

# Labels kubelet and EKS put on every node of a managed node group (x86_64 AL2023).
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@dataclass(frozen=True)
class Node:
    pool: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    # What the node offers pods: cpu (cores), memory (bytes), nvidia.com/gpu; empty: not modelled.
    capacity: dict[str, float] = field(default_factory=dict)
    karpenter: bool = False


def _capacity(instance_type: str) -> dict[str, float]:
    spec = instance_spec(instance_type)
    return {"cpu": spec.vcpu, "memory": spec.memory_gib * 2**30, GPU_RESOURCE: spec.gpus}


def karpenter_nodes(synthesis: Synthesis) -> list[Node]:
    """The largest node each NodePool can launch: one of its admitted (priced) types that fits its limits."""
    region = synthesis.one("pulumi:providers:aws").inputs["region"]
    nodes = []
    for record in synthesis.objects("NodePool"):
        spec, name = record.inputs["spec"], record.inputs["metadata"]["name"]
        template = spec["template"]
        requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"] if r["operator"] == "In"}
        fitting = [t for t in node_pool_instance_types(spec, region) if nodes_within_limits(spec["limits"],
                                                                                            instance_spec(t)) >= 1]
        # Config validation refuses limits below one node (infra/settings/checks.py): a pool that can
        # launch nothing here is a defect, never a pool to skip.
        assert fitting, f"NodePool {name} admits no instance type within its limits {spec['limits']}"
        largest = max(fitting, key=lambda t: (instance_spec(t).gpus, instance_spec(t).vcpu,
                                              instance_spec(t).memory_gib))
        labels = {
            # Karpenter labels its nodes with the pool and every requirement it satisfied.
            **{key: values[0] for key, values in requirements.items()},
            "karpenter.sh/nodepool": name, "node.kubernetes.io/instance-type": largest,
            "karpenter.k8s.aws/instance-family": largest.split(".", 1)[0],
            "topology.kubernetes.io/region": region,
            **template["metadata"].get("labels", {}),
        }
        nodes.append(Node(pool=labels[POOL_LABEL], labels=labels, taints=list(template["spec"].get("taints", [])),
                          capacity=_capacity(largest), karpenter=True))
    return nodes


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
        largest = max(inputs["instanceTypes"], key=lambda t: instance_spec(t).vcpu)
        nodes.append(Node(pool=labels[POOL_LABEL], labels=labels, taints=taints, capacity=_capacity(largest)))
    return nodes + karpenter_nodes(synthesis)


def _quantity(resource: str, value: Any) -> float:
    if resource == "cpu":
        return cpu_cores(str(value))
    if resource == "memory":
        return float(memory_bytes(str(value)))
    return float(value)


def requests(pod: dict[str, Any]) -> dict[str, float]:
    """What the scheduler reserves for a pod: its containers' requests summed (a limit stands in for a
    missing request, as Kubernetes defaults it), or its largest init container's if larger."""
    def of(container: dict[str, Any]) -> dict[str, float]:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {key: _quantity(key, value) for key, value in asked.items() if key in ("cpu", "memory", GPU_RESOURCE)}

    total: dict[str, float] = {}
    # The operator's Prometheus and Alertmanager carry their main container's resources in the spec.
    main = [pod] if "resources" in pod else []
    for container in [*main, *(pod.get("containers") or [])]:
        for key, value in of(container).items():
            total[key] = total.get(key, 0.0) + value
    for container in pod.get("initContainers") or []:
        for key, value in of(container).items():
            total[key] = max(total.get(key, 0.0), value)
    return total


def fits(pod: dict[str, Any], node: Node) -> bool:
    return all(value <= node.capacity.get(key, 0.0) for key, value in requests(pod).items() if value)


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


def pools_with_room(pod: dict[str, Any], nodes: list[Node]) -> set[str]:
    """Pools whose nodes admit the pod and can hold what it requests (GPUs included)."""
    return {node.pool for node in nodes if schedulable(pod, node) and fits(pod, node)}
