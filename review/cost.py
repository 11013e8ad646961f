"""Estimated monthly cost of a synthesized stack, as a range from minimum to maximum scale.

Minimum: every node group at its minSize (a GPU pool with min 0 costs nothing); every Karpenter
NodePool holding just the nodes that the minimum replicas of the workloads selecting it need (the
model's pods keep nodes on their pool), empty otherwise (Karpenter launches nodes only for pending
pods); maximum: every node group at maxSize,
every NodePool filled to its limits with its dearest instance type, on demand (spot falls back to it).
The system node group of a Karpenter stack is always on. Prices come from review/prices.json, a dated snapshot with its
source; an instance type or region missing from it is an error, never a silent zero.
`cost_text` and `cost_markdown` print the estimate for `make plan`, next to `CostEstimate.to_dict`
(its JSON), so every view of an estimate lives with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from infra.instance_types import FIGURES, Figures, category
from review.records import ResourceRecord, Synthesis

PRICES_FILE = Path(__file__).resolve().parent / "prices.json"


# Adds a line item whose quantity is a range from the price table's assumptions: (item, assumption
# key, price per unit of that quantity, basis after the range).
Ranged = Callable[[str, str, float, str], None]


class PriceError(LookupError):
    """The price table cannot price this stack."""


@dataclass(frozen=True)
class LineItem:
    item: str
    minimum: float
    maximum: float
    basis: str


@dataclass(frozen=True)
class CostEstimate:
    region: str
    prices_date: str
    currency: str
    items: list[LineItem]

    @property
    def minimum(self) -> float:
        return sum(item.minimum for item in self.items)

    @property
    def maximum(self) -> float:
        return sum(item.maximum for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "minimum": round(self.minimum, 2), "maximum": round(self.maximum, 2)}


@cache
def price_table(path: Path = PRICES_FILE) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(path.read_text())
    return table


def _region_prices(region: str) -> dict[str, Any]:
    table = price_table()
    if region not in table["regions"]:
        raise PriceError(f"no prices for region {region} in {PRICES_FILE.name} (it has "
                         f"{', '.join(table['regions'])}; prices as of {table['date']}): add the region")
    prices: dict[str, Any] = table["regions"][region]
    return prices


def _instance_hour(region: str, instance_type: str, capacity_type: str) -> float:
    ec2 = _region_prices(region)["ec2"]
    if instance_type not in ec2:
        raise PriceError(f"no price for instance type {instance_type} in {region} in {PRICES_FILE.name} "
                         f"(prices as of {price_table()['date']}): add it")
    return float(ec2[instance_type]["spotHour" if capacity_type == "SPOT" else "onDemandHour"])


def instance_spec(instance_type: str) -> Figures:
    """What an instance type holds (infra/instance_types.py)."""
    if instance_type not in FIGURES:
        raise PriceError(f"no vCPU/memory/GPU figures for {instance_type} in infra/instance_types.py: add it to "
                         "FIGURES")
    return FIGURES[instance_type]


def node_pool_instance_types(spec: dict[str, Any], region: str) -> list[str]:
    """The priced instance types a NodePool's requirements admit: its explicit types (each must be
    priced), or the priced sizes of its families (at least one per family)."""
    requirements = {r["key"]: r.get("values") or [] for r in spec["template"]["spec"]["requirements"]
                    if r["operator"] == "In"}
    priced = sorted(_region_prices(region)["ec2"])
    if "node.kubernetes.io/instance-type" in requirements:
        for instance_type in requirements["node.kubernetes.io/instance-type"]:
            _instance_hour(region, instance_type, "ON_DEMAND")
        return list(requirements["node.kubernetes.io/instance-type"])
    families = requirements.get("karpenter.k8s.aws/instance-family", [])
    categories = requirements.get("karpenter.k8s.aws/instance-category", [])
    found = []
    for family in families:
        sizes = [t for t in priced if t.split(".", 1)[0] == family and (not categories or category(t) in categories)]
        if not sizes:
            raise PriceError(f"no price for any {family} instance type in {region} in {PRICES_FILE.name} "
                             f"(prices as of {price_table()['date']}): add one")
        found += sizes
    if categories and not families:
        found = [t for t in priced if category(t) in categories]
        if not found:
            raise PriceError(f"no price for any instance type of categories {', '.join(categories)} in {region} "
                             f"in {PRICES_FILE.name} (prices as of {price_table()['date']}): add one")
    return found


def _quantity_gib(quantity: str) -> float:
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    return float(quantity) / 2**30


def nodes_within_limits(limits: dict[str, str], spec: Figures) -> int:
    """How many nodes of one instance type fit in a NodePool's limits: Karpenter launches none that
    would take the pool past any of them."""
    bounds = [int(float(limits["cpu"]) // spec.vcpu)]
    if "memory" in limits:
        bounds.append(int(_quantity_gib(limits["memory"]) // spec.memory_gib))
    if spec.gpus and "nvidia.com/gpu" in limits:
        bounds.append(int(limits["nvidia.com/gpu"]) // spec.gpus)
    return max(0, min(bounds))


# What kubelet keeps from pods on an EKS node (the AL2023 AMI's kube-reserved, as Karpenter computes
# it, plus the 100Mi hard eviction threshold): CPU by the first core 6%, the second 1%, the next two
# 0.5%, the rest 0.25%; memory 255Mi + 11Mi per pod, taken here at 58 pods (an xlarge's ENI limit).
_RESERVED_MEMORY_GIB = (100 + 255 + 11 * 58) / 1024


def _allocatable(spec: Figures) -> tuple[float, float, int]:
    """cpu cores, memory GiB and GPUs a node of this type offers pods (before DaemonSets)."""
    cores, reserved = float(spec.vcpu), 0.0
    for width, share in ((1, 0.06), (1, 0.01), (2, 0.005), (float("inf"), 0.0025)):
        taken = min(cores, width)
        reserved, cores = reserved + taken * share, cores - taken
    return spec.vcpu - reserved, spec.memory_gib - _RESERVED_MEMORY_GIB, spec.gpus


def _cpu(quantity: Any) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _pod_requests(pod: dict[str, Any]) -> tuple[float, float, int]:
    """cpu cores, memory GiB and GPUs the scheduler reserves for a pod (a limit stands in for a missing
    request, as Kubernetes defaults it; the largest init container's, if larger)."""
    def of(container: dict[str, Any]) -> tuple[float, float, int]:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return (_cpu(asked.get("cpu", 0)), _quantity_gib(str(asked.get("memory", 0))),
                int(asked.get("nvidia.com/gpu", 0)))

    main = [of(c) for c in pod.get("containers") or []]
    init = [of(c) for c in pod.get("initContainers") or []]
    total = tuple(sum(values) for values in zip(*main, strict=True)) if main else (0.0, 0.0, 0)
    return (max([total[0], *(i[0] for i in init)]), max([total[1], *(i[1] for i in init)]),
            int(max([total[2], *(i[2] for i in init)])))


def _min_replicas(synthesis: Synthesis, workload: ResourceRecord) -> int:
    """The fewest pods a workload keeps: its ScaledObject's minReplicaCount (KEDA's default 0), its
    HPA's minReplicas (default 1), or its replicas."""
    kind, name = workload.inputs.get("kind"), workload.get("metadata", "name")
    for scaled in synthesis.objects("ScaledObject"):
        target = scaled.get("spec", "scaleTargetRef") or {}
        if target.get("name") == name and target.get("kind", "Deployment") == kind:
            return int(scaled.get("spec", "minReplicaCount") or 0)
    for hpa in synthesis.objects("HorizontalPodAutoscaler"):
        target = hpa.get("spec", "scaleTargetRef") or {}
        if target.get("name") == name and target.get("kind") == kind:
            return int(hpa.get("spec", "minReplicas") or 1)
    replicas = workload.get("spec", "replicas")
    return 1 if replicas is None else int(replicas)


@dataclass(frozen=True)
class PoolFloor:
    """The nodes a NodePool keeps for the pods that always run on it (workloads selecting its label)."""
    nodes: int
    instance_type: str
    rate: float
    capacity: str
    pods: str  # "3 model-server" for the basis


def pool_floor(synthesis: Synthesis, spec: dict[str, Any], region: str) -> PoolFloor | None:
    """The cheapest way to hold the minimum replicas of the workloads whose nodeSelector picks this
    NodePool: for each admitted type that holds one of their pods, as many nodes as their requests
    need packed (spread constraints and DaemonSets can only add nodes), at spot prices where the pool
    allows spot. None when nothing always runs there (the pool can empty)."""
    labels = spec["template"]["metadata"].get("labels") or {}
    wanted = []
    for kind in ("Rollout", "Deployment", "StatefulSet"):
        for workload in synthesis.objects(kind):
            pod = workload.get("spec", "template", "spec") or {}
            selector = pod.get("nodeSelector") or {}
            replicas = _min_replicas(synthesis, workload)
            if selector and selector.items() <= labels.items() and replicas:
                wanted.append((workload.get("metadata", "name"), replicas, _pod_requests(pod)))
    if not wanted:
        return None
    capacity_types = next((r.get("values") or [] for r in spec["template"]["spec"]["requirements"]
                           if r["key"] == "karpenter.sh/capacity-type"), ["on-demand"])
    capacity = "SPOT" if "spot" in capacity_types else "ON_DEMAND"
    options = []
    for instance_type in node_pool_instance_types(spec, region):
        offered = _allocatable(instance_spec(instance_type))
        if any(request[i] > offered[i] for _, _, request in wanted for i in range(3)):
            continue  # one pod does not fit on a node of this type
        needed = max(1, *(math.ceil(sum(n * request[i] for _, n, request in wanted) / offered[i])
                          for i in range(3) if offered[i] > 0))
        rate = _instance_hour(region, instance_type, capacity)
        options.append((needed * rate, needed, instance_type, rate))
    if not options:
        raise PriceError(f"no priced instance type the NodePool admits holds one pod of "
                         f"{', '.join(name for name, _, _ in wanted)}: add one to {PRICES_FILE.name}")
    _, nodes, instance_type, rate = min(options)
    pods = ", ".join(f"{n} {name}" for name, n, _ in wanted)
    return PoolFloor(nodes, instance_type, rate, capacity, pods)


def karpenter_pools(synthesis: Synthesis, region: str, hours: float, gp3_gb_month: float,
                    items: list[LineItem]) -> None:
    """Each NodePool from the nodes its workloads' minimum replicas need (nothing when none always runs
    there: Karpenter launches nodes only for pending pods) to its limits filled with the type that costs
    most there, on demand; its root volumes with it. Then the interruption queue and rules, at no cost."""
    node_classes = {r.get("metadata", "name"): r.inputs["spec"] for r in synthesis.objects("EC2NodeClass")}
    for record in synthesis.objects("NodePool"):
        spec, name = record.inputs["spec"], record.get("metadata", "name")
        candidates = node_pool_instance_types(spec, region)
        fleets = {t: nodes_within_limits(spec["limits"], instance_spec(t)) for t in candidates}
        # The dearest fill of the limits; of equally dear ones, the one with most nodes (and root volumes).
        dearest = max(candidates, key=lambda t: (round(fleets[t] * _instance_hour(region, t, "ON_DEMAND"), 6),
                                                 fleets[t]))
        nodes = fleets[dearest]
        rate = _instance_hour(region, dearest, "ON_DEMAND")
        limits = ", ".join(f"{key} {value}" for key, value in spec["limits"].items())
        floor = pool_floor(synthesis, spec, region)
        low_nodes = floor.nodes if floor else 0
        ceiling = f"{nodes} x {dearest} at ${rate}/h on demand (limits {limits})"
        items.append(LineItem(
            f"EC2: Karpenter pool {name}", low_nodes * floor.rate * hours if floor else 0.0, nodes * rate * hours,
            f"{floor.nodes} x {floor.instance_type} at ${floor.rate}/h "
            f"{'spot' if floor.capacity == 'SPOT' else 'on demand'} (minimum replicas: {floor.pods}) .. {ceiling}"
            if floor else f"0..{ceiling}"))
        disk = _quantity_gib(node_classes[name]["blockDeviceMappings"][0]["ebs"]["volumeSize"])
        items.append(LineItem(f"EBS: Karpenter pool {name} root volumes (gp3)", low_nodes * disk * gp3_gb_month,
                              nodes * disk * gp3_gb_month,
                              f"{low_nodes * disk:g}..{nodes * disk:g} GB x ${gp3_gb_month}/GB-month"))
    if synthesis.of_type("aws:sqs/queue:Queue"):
        rules = len(synthesis.of_type("aws:cloudwatch/eventRule:EventRule"))
        # Karpenter long-polls (20 s) its queue: about 130,000 requests a month, inside SQS's free million;
        # EventBridge delivers AWS service events to rules on the default bus at no charge.
        items.append(LineItem("SQS + EventBridge: interruption queue and rules", 0.0, 0.0,
                              f"1 queue, {rules} rules: ~130k long polls/month is inside SQS's free 1M requests; "
                              "AWS service events on the default bus are free"))


def _by_id(synthesis: Synthesis, type_: str) -> dict[str, ResourceRecord]:
    return {record.id: record for record in synthesis.of_type(type_)}


def estimate(synthesis: Synthesis) -> CostEstimate:
    table = price_table()
    hours = float(table["hoursPerMonth"])
    assumptions = table["assumptions"]
    region = str(synthesis.one("pulumi:providers:aws").inputs["region"])
    prices = _region_prices(region)
    items: list[LineItem] = []

    def fixed(item: str, monthly: float, basis: str) -> None:
        if monthly:
            items.append(LineItem(item, monthly, monthly, basis))

    def ranged(item: str, key: str, unit_price: float, basis: str) -> None:
        """An item whose quantity ranges over the table's assumption `key`; `basis` follows the range."""
        low, high = assumptions[key]["min"], assumptions[key]["max"]
        items.append(LineItem(item, low * unit_price, high * unit_price, f"{low}..{high} {basis}"))

    clusters = len(synthesis.of_type("aws:eks/cluster:Cluster"))
    fixed("EKS control plane", clusters * prices["eksControlPlaneHour"] * hours,
          f"{clusters} cluster x ${prices['eksControlPlaneHour']}/h (standard support)")

    templates = _by_id(synthesis, "aws:ec2/launchTemplate:LaunchTemplate")
    volume_gb_range = [0.0, 0.0]
    for group in synthesis.of_type("aws:eks/nodeGroup:NodeGroup"):
        inputs = group.inputs
        scaling, capacity = inputs["scalingConfig"], inputs.get("capacityType", "ON_DEMAND")
        rates = [_instance_hour(region, t, capacity) for t in inputs["instanceTypes"]]
        pool = inputs["tags"]["node-pool"]
        items.append(LineItem(
            f"EC2: pool {pool} ({capacity.lower().replace('_', '-')})",
            scaling["minSize"] * min(rates) * hours, scaling["maxSize"] * max(rates) * hours,
            f"{scaling['minSize']}..{scaling['maxSize']} x {'/'.join(inputs['instanceTypes'])} "
            f"at ${min(rates)}..${max(rates)}/h"))
        template = templates.get(inputs.get("launchTemplate", {}).get("id", ""))
        disk = template.inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] if template else 20
        volume_gb_range[0] += scaling["minSize"] * disk
        volume_gb_range[1] += scaling["maxSize"] * disk
    items.append(LineItem("EBS: node root volumes (gp3)", volume_gb_range[0] * prices["ebsGp3GbMonth"],
                          volume_gb_range[1] * prices["ebsGp3GbMonth"],
                          f"{volume_gb_range[0]:g}..{volume_gb_range[1]:g} GB x ${prices['ebsGp3GbMonth']}/GB-month"))
    karpenter_pools(synthesis, region, hours, prices["ebsGp3GbMonth"], items)

    nats = len(synthesis.of_type("aws:ec2/natGateway:NatGateway"))
    fixed("NAT gateways", nats * prices["natGatewayHour"] * hours,
          f"{nats} x ${prices['natGatewayHour']}/h, plus per-GB processing (excluded)")
    addresses = len(synthesis.of_type("aws:ec2/eip:Eip"))
    zones = len([r for r in synthesis.of_type("aws:ec2/subnet:Subnet")
                 if (r.inputs.get("tags") or {}).get("kubernetes.io/role/elb")])
    ingresses = [r for r in synthesis.of_type("kubernetes:networking.k8s.io/v1:Ingress")
                 if r.get("spec", "ingressClassName") == "alb"]
    balancers = len(ingresses)
    # An internal load balancer has private addresses only.
    public = len([r for r in ingresses
                  if r.get("metadata", "annotations", "alb.ingress.kubernetes.io/scheme") != "internal"])
    fixed("Public IPv4 addresses", (addresses + public * zones) * prices["publicIpv4Hour"] * hours,
          f"{addresses} NAT + {public * zones} load balancer addresses x ${prices['publicIpv4Hour']}/h")
    if balancers:
        fixed("Application load balancer", balancers * prices["albHour"] * hours,
              f"{balancers} x ${prices['albHour']}/h")
        ranged("Load balancer capacity units", "albLcus", balancers * prices["albLcuHour"] * hours,
               f"LCU x ${prices['albLcuHour']}/h")
    file_systems = len(synthesis.of_type("aws:efs/fileSystem:FileSystem"))
    if file_systems:
        ranged("EFS storage", "efsStoredGb", file_systems * prices["efsStandardGbMonth"],
               f"GB x ${prices['efsStandardGbMonth']}/GB-month")
    keys = len(synthesis.of_type("aws:kms/key:Key"))
    fixed("KMS keys", keys * prices["kmsKeyMonth"], f"{keys} x ${prices['kmsKeyMonth']}/month")
    if any(c.inputs.get("enabledClusterLogTypes") for c in synthesis.of_type("aws:eks/cluster:Cluster")):
        ranged("Control-plane log ingestion", "controlPlaneLogGbPerMonth", prices["cloudwatchLogsIngestGb"],
               f"GB x ${prices['cloudwatchLogsIngestGb']}/GB ingested")
    front_door(synthesis, items, ranged)
    observability(synthesis, items, prices, ranged)
    return CostEstimate(region, table["date"], table["currency"], items)


def observability(synthesis: Synthesis, items: list[LineItem], prices: dict[str, Any], ranged: Ranged) -> None:
    """Prometheus's volume, container logs in CloudWatch, access logs in S3 (SNS email: negligible)."""
    shared = price_table()["global"]
    for chart in synthesis.of_type("kubernetes:helm.sh/v4:Chart"):
        storage = chart.get("values", "prometheus", "prometheusSpec", "storageSpec", "volumeClaimTemplate", "spec",
                            "resources", "requests", "storage")
        if isinstance(storage, str):
            gib = float(storage.removesuffix("Gi"))
            monthly = gib * prices["ebsGp3GbMonth"]
            items.append(LineItem("EBS: Prometheus volume (gp3)", monthly, monthly,
                                  f"{gib:g} GB x ${prices['ebsGp3GbMonth']}/GB-month"))
    for group in synthesis.of_type("aws:cloudwatch/logGroup:LogGroup"):
        if group.name != "logs-containers":
            continue
        ranged("Container log ingestion", "containerLogGbPerMonth", prices["cloudwatchLogsIngestGb"],
               f"GB x ${prices['cloudwatchLogsIngestGb']}/GB ingested")
        days = group.inputs["retentionInDays"]
        ranged("Container log storage", "containerLogGbPerMonth",
               shared["cloudwatchLogsStorageGbMonth"] * days / 30,
               f"GB a month kept {days} days x ${shared['cloudwatchLogsStorageGbMonth']}/GB-month")
    if synthesis.of_type("aws:s3/bucket:Bucket"):
        ranged("S3: load balancer access logs", "accessLogGbStored", shared["s3StandardGbMonth"],
               f"GB x ${shared['s3StandardGbMonth']}/GB-month")
    if synthesis.of_type("aws:sns/topic:Topic"):
        items.append(LineItem("SNS alert emails", 0, 0, "first 1,000 emails a month free; then $2 per 100,000"))


def front_door(synthesis: Synthesis, items: list[LineItem], ranged: Ranged) -> None:
    """TLS, DNS, WAF and image scanning: priced the same in every region of the table."""
    prices = price_table()["global"]
    certificates = synthesis.of_type("aws:acm/certificate:Certificate")
    if certificates:
        items.append(LineItem("ACM public certificate", 0, 0, f"{len(certificates)} x free"))
    if synthesis.of_type("aws:route53/record:Record"):
        items.append(LineItem("Route 53 records", 0, 0, "alias queries to the load balancer are free; "
                                                         "other queries negligible ($0.40/million)"))
    for acl in synthesis.of_type("aws:wafv2/webAcl:WebAcl"):
        rules = len(acl.inputs["rules"])
        monthly = prices["wafWebAclMonth"] + rules * prices["wafRuleMonth"]
        items.append(LineItem("AWS WAF web ACL and rules", monthly, monthly,
                              f"${prices['wafWebAclMonth']}/month + {rules} rules x ${prices['wafRuleMonth']}/month"))
        ranged("AWS WAF requests", "requestsMillionPerMonth", prices["wafRequestsMillion"],
               f"million requests x ${prices['wafRequestsMillion']}/million")
    for scanning in synthesis.of_type("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"):
        if scanning.inputs["scanType"] == "ENHANCED":
            ranged("ECR image scans (Amazon Inspector)", "imagesPushedPerMonth", prices["inspectorImageScan"],
                   f"pushed images x ${prices['inspectorImageScan']}")
            ranged("ECR rescans (Amazon Inspector)", "imageRescansPerMonth", prices["inspectorImageRescan"],
                   f"rescans x ${prices['inspectorImageRescan']}")


# -- the estimate as a reviewer reads it (JSON is CostEstimate.to_dict) ---------------------------------

def range_basis(cost: CostEstimate, sentences: bool = False) -> str:
    """What the two ends of the range assume, for the pools this stack has."""
    karpenter = any(item.item.startswith("EC2: Karpenter pool") for item in cost.items)
    if karpenter:
        low, high = ("the system node group, and in each Karpenter pool the nodes its workloads' minimum "
                     "replicas need (packed, DaemonSets aside; other pools empty)",
                     "every Karpenter pool filled to its limits, on demand")
    else:
        low, high = "node pools at minSize (GPU pools at 0)", "every pool at maxSize"
    if sentences:
        return f"Minimum: {low.replace('at 0', 'at zero')}. Maximum: {high}."
    return f"minimum: {low}; maximum: {high}"


def money(value: float) -> str:
    """Whole dollars from $10 up; cents below, so a small item ($0.35 of log storage) does not read as $0."""
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def cost_text(cost: CostEstimate) -> str:
    width = max(len(item.item) for item in cost.items)
    lines = [f"Estimated monthly cost ({cost.region}, prices as of {cost.prices_date}): "
             f"{money(cost.minimum)} .. {money(cost.maximum)}"]
    for item in cost.items:
        lines.append(f"  {item.item:<{width}}  {money(item.minimum):>9} .. {money(item.maximum):>9}   {item.basis}")
    lines.append(f"  {range_basis(cost)}")
    return "\n".join(lines)


def cost_markdown(cost: CostEstimate) -> str:
    lines = [f"**Estimated monthly cost**: {money(cost.minimum)} to {money(cost.maximum)} "
             f"({cost.region}, prices as of {cost.prices_date})", "",
             "| Item | Minimum | Maximum | Basis |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {i.item} | {money(i.minimum)} | {money(i.maximum)} | {i.basis} |" for i in cost.items]
    lines += [f"| **Total** | **{money(cost.minimum)}** | **{money(cost.maximum)}** | |", "",
              range_basis(cost, sentences=True)]
    return "\n".join(lines)
