"""What a stack declares, as a reviewer reads it: its resources grouped by component with the
settings a reviewer cares about, each chart followed by the objects it renders.

`make plan` prints it above the cost (review/plan.py); `python -m review.synth STACK` prints it alone.
"""

from __future__ import annotations

import json
from typing import Any

from review.records import ResourceRecord, Synthesis
from review.rendering import CHART_TYPES, ChartUnavailable, RenderedChart, render


def canary_steps(steps: list[dict[str, Any]] | None) -> str | None:
    """A Rollout's canary steps as a reviewer reads them: 10% → wait 120s → 50% → wait 120s → check ... → 100%."""
    if not steps:
        return None
    shown = []
    for step in steps:
        if "setWeight" in step:
            shown.append(f"{step['setWeight']}%")
        elif "pause" in step:
            shown.append(f"wait {step['pause'].get('duration', 'for a person')}")
        elif "analysis" in step:
            shown.append("check " + ",".join(t["templateName"] for t in step["analysis"]["templates"]))
    return " → ".join([*shown, "100%"])


def analysis_thresholds(metrics: list[dict[str, Any]] | None) -> str | None:
    """Each metric and when it fails: `error-ratio > 0.01 every 10s`."""
    if not metrics:
        return None
    return "; ".join(f"{m['name']} {m['failureCondition'].rsplit('result[0] ', 1)[-1]} every {m.get('interval')}"
                     for m in metrics)


def served_model(container: dict[str, Any] | None) -> str | None:
    """The model server's format and device, as its pod's environment says: `xgboost on cuda`."""
    env = {item.get("name"): item.get("value") for item in (container or {}).get("env") or []}
    if "MODEL_FORMAT" not in env:
        return None
    return f"{env['MODEL_FORMAT']} on {env.get('MODEL_DEVICE', 'auto')}"


def node_pool_fields(record: ResourceRecord) -> dict[str, Any]:
    """A Karpenter NodePool as a reviewer reads it: what it may launch, its limits, how nodes go."""
    get = record.get
    requirements = {r["key"]: ",".join(r.get("values") or []) for r in get("spec", "template", "spec", "requirements")
                    or [] if r["operator"] == "In"}
    disruption = get("spec", "disruption") or {}
    return {
        "categories": requirements.get("karpenter.k8s.aws/instance-category"),
        "families": requirements.get("karpenter.k8s.aws/instance-family"),
        "types": requirements.get("node.kubernetes.io/instance-type"),
        "capacity": requirements.get("karpenter.sh/capacity-type"),
        "limits": ",".join(f"{key}={value}" for key, value in (get("spec", "limits") or {}).items()) or None,
        "taints": [t["key"] for t in get("spec", "template", "spec", "taints") or []] or None,
        "consolidation": f"{disruption.get('consolidationPolicy')} after {disruption.get('consolidateAfter')}",
        "budget": ",".join(str(b.get("nodes")) for b in disruption.get("budgets") or []) or None,
        "expireAfter": get("spec", "template", "spec", "expireAfter"),
    }


def _summary_fields(record: ResourceRecord) -> str:
    """The settings a reviewer cares about, per resource type."""
    get = record.get
    scaling = get("scalingConfig") or {}
    pick: dict[str, Any] = {
        "aws:ec2/vpc:Vpc": {"cidr": get("cidrBlock")},
        "aws:ec2/subnet:Subnet": {"cidr": get("cidrBlock"), "zone": get("availabilityZone")},
        "aws:eks/cluster:Cluster": {
            "version": get("version"),
            "publicAccess": get("vpcConfig", "publicAccessCidrs") or "off",
            "logs": get("enabledClusterLogTypes"),
            "auth": get("accessConfig", "authenticationMode"),
        },
        "aws:eks/nodeGroup:NodeGroup": {
            "ami": get("amiType"), "types": get("instanceTypes"), "capacity": get("capacityType"),
            "size": f"{scaling.get('minSize', '?')}..{scaling.get('maxSize', '?')}",
            "taints": [t["key"] for t in get("taints") or []] or None,
        },
        "aws:eks/addon:Addon": {"version": get("addonVersion")},
        "aws:ecr/repository:Repository": {
            "tags": get("imageTagMutability"), "scanOnPush": get("imageScanningConfiguration", "scanOnPush")},
        "aws:eks/accessEntry:AccessEntry": {"principal": get("principalArn")},
        "aws:cloudwatch/logGroup:LogGroup": {"retentionDays": get("retentionInDays")},
        "kubernetes:helm.sh/v4:Chart": {"chart": get("chart"), "version": get("version")},
        "kubernetes:helm.sh/v3:Release": {"chart": get("chart"), "version": get("version")},
        "docker:index/image:Image": {
            "dockerfile": get("build", "dockerfile"), "model": get("build", "args", "MODEL_FILE")},
        "kubernetes:apps/v1:Deployment": {
            "replicas": get("spec", "replicas"), "image": get("spec", "template", "spec", "containers", 0, "image"),
            "model": served_model(get("spec", "template", "spec", "containers", 0))},
        "kubernetes:argoproj.io/v1alpha1:Rollout": {
            "steps": canary_steps(get("spec", "strategy", "canary", "steps")),
            "image": get("spec", "template", "spec", "containers", 0, "image"),
            "model": served_model(get("spec", "template", "spec", "containers", 0))},
        "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate": {"fails": analysis_thresholds(get("spec", "metrics"))},
        "kubernetes:keda.sh/v1alpha1:ScaledObject": {
            "replicas": f"{get('spec', 'minReplicaCount')}..{get('spec', 'maxReplicaCount')}",
            "triggers": ",".join(trigger["name"] for trigger in get("spec", "triggers") or []) or None},
        "kubernetes:karpenter.sh/v1:NodePool": node_pool_fields(record),
        "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass": {
            "ami": ",".join(term.get("alias", "?") for term in get("spec", "amiSelectorTerms") or []) or None,
            "disk": get("spec", "blockDeviceMappings", 0, "ebs", "volumeSize")},
        "aws:sqs/queue:Queue": {"retention": get("messageRetentionSeconds"), "sse": get("sqsManagedSseEnabled")},
    }.get(record.type, {})
    parts = [f"{key}={value}" for key, value in pick.items() if value is not None]
    if record.options.get("protect"):
        parts.append("[protected]")
    if record.options.get("ignoreChanges"):
        parts.append(f"[ignores {', '.join(record.options['ignoreChanges'])}]")
    return "  ".join(parts)


def chart_contents(synthesis: Synthesis) -> dict[str, RenderedChart | ChartUnavailable]:
    """Each chart resource's rendered objects (by URN), or why they cannot be shown here."""
    contents: dict[str, RenderedChart | ChartUnavailable] = {}
    for record in synthesis.resources:
        if record.type in CHART_TYPES:
            try:
                contents[record.urn] = render(record)
            except ChartUnavailable as error:
                contents[record.urn] = error
    return contents


def object_label(obj: dict[str, Any]) -> str:
    namespace = obj["metadata"].get("namespace")
    return f"{namespace}/{obj['metadata']['name']}" if namespace else obj["metadata"]["name"]


def summary(synthesis: Synthesis) -> str:
    """Resources grouped by component, each chart followed by the objects it renders (what
    `pulumi preview` lists as a helm.v4.Chart's children; a helm.v3.Release shows as one)."""
    contents = chart_contents(synthesis)
    rendered = sum(len(c.objects) for c in contents.values() if isinstance(c, RenderedChart))
    lines = [f"Stack {synthesis.project}/{synthesis.stack}: {sum(r.custom for r in synthesis.resources)} resources"
             + (f", and {rendered} objects their charts render" if rendered else "")]
    groups: dict[str, list[ResourceRecord]] = {}
    for record in synthesis.resources:
        if not record.custom:
            continue
        component = synthesis.component_of(record)
        group = f"{component.name} ({component.type.split(':')[-1]})" if component else "(stack)"
        groups.setdefault(group, []).append(record)
    for group, records in groups.items():
        lines.append("")
        lines.append(f"{group}: {len(records)}")
        for record in records:
            short_type = record.type.split(":")[-1] if record.type.count(":") == 2 else record.type
            detail = _summary_fields(record)
            lines.append(f"  {short_type:<24} {record.name}" + (f"  {detail}" if detail else ""))
            content = contents.get(record.urn)
            if isinstance(content, ChartUnavailable):
                lines.append(f"      (chart contents not shown: {content})")
            elif content is not None:
                lines += [f"      {obj['kind']:<30} {object_label(obj)}" for obj in content.objects]
    lines.append("")
    lines.append("Outputs:")
    for name, value in sorted(synthesis.outputs.items()):
        lines.append(f"  {name}: {json.dumps(value) if not isinstance(value, str) else value}")
    return "\n".join(lines)
