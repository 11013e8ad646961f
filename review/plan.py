"""Offline plans and diffs for reviewers: no cloud credentials needed.

    python -m review.plan show prod [--format text|markdown|json]
    python -m review.plan diff dev prod                    # two stacks
    python -m review.plan diff prod --base origin/main     # one stack at two git revisions

`show` prints what `pulumi up` would declare (resources grouped by component with the
settings a reviewer cares about) and the estimated monthly cost range. `diff` prints the
resources added, removed and changed, with the changed properties, and the change in the
cost range. Secret values were replaced by "[secret]" when the program was synthesized, so
they cannot appear here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml

from infra.settings import PROJECT_DIR, StackConfigError
from review.cost import CostEstimate, PriceError, estimate
from review.records import ResourceRecord, Synthesis
from review.rendering import CHART_TYPES, ChartUnavailable, RenderedChart, render
from review.synth import synthesize

MAX_VALUE_CHARS = 80


# ---------------------------------------------------------------------------
# What a stack declares, as a reviewer reads it
# ---------------------------------------------------------------------------


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
        "kubernetes:apps/v1:Deployment": {
            "replicas": get("spec", "replicas"), "image": get("spec", "template", "spec", "containers", 0, "image")},
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


# ---------------------------------------------------------------------------
# Cost tables
# ---------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def cost_text(cost: CostEstimate) -> str:
    width = max(len(item.item) for item in cost.items)
    lines = [f"Estimated monthly cost ({cost.region}, prices as of {cost.prices_date}): "
             f"{_money(cost.minimum)} .. {_money(cost.maximum)}"]
    for item in cost.items:
        lines.append(f"  {item.item:<{width}}  {_money(item.minimum):>9} .. {_money(item.maximum):>9}   {item.basis}")
    lines.append("  minimum: node pools at minSize (GPU pools at 0); maximum: every pool at maxSize")
    return "\n".join(lines)


def cost_markdown(cost: CostEstimate) -> str:
    lines = [f"**Estimated monthly cost**: {_money(cost.minimum)} to {_money(cost.maximum)} "
             f"({cost.region}, prices as of {cost.prices_date})", "",
             "| Item | Minimum | Maximum | Basis |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {i.item} | {_money(i.minimum)} | {_money(i.maximum)} | {i.basis} |" for i in cost.items]
    lines += [f"| **Total** | **{_money(cost.minimum)}** | **{_money(cost.maximum)}** | |", "",
              "Minimum: node pools at minSize (GPU pools at zero). Maximum: every pool at maxSize."]
    return "\n".join(lines)


def show(synthesis: Synthesis, fmt: str) -> str:
    cost = estimate(synthesis)
    if fmt == "json":
        return json.dumps({"stack": synthesis.stack, "resources": len([r for r in synthesis.resources if r.custom]),
                           "cost": cost.to_dict()}, indent=2)
    if fmt == "markdown":
        return "\n".join([f"### Plan for `{synthesis.stack}`", "", "```", summary(synthesis), "```", "",
                          cost_markdown(cost)])
    return summary(synthesis) + "\n\n" + cost_text(cost)


# ---------------------------------------------------------------------------
# Diffs
# ---------------------------------------------------------------------------


def _key(record: ResourceRecord) -> str:
    """A resource's identity across stacks and revisions: its URN without stack and project."""
    return record.urn.split("::", 3)[3] if record.urn.count("::") >= 3 else record.urn


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, str) and value[:1] in "{[":
        # JSON documents held in strings (IAM policies, add-on configuration) diff by field.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _show_value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


@dataclass
class ResourceChange:
    key: str
    type: str
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)


@dataclass
class Diff:
    before: str
    after: str
    added: list[ResourceRecord]
    removed: list[ResourceRecord]
    changed: list[ResourceChange]
    cost_before: CostEstimate
    cost_after: CostEstimate


def _comparable(record: ResourceRecord) -> dict[str, Any]:
    options = {k: v for k, v in record.options.items() if k in ("protect", "ignoreChanges", "retainOnDelete")}
    return {"inputs": record.inputs, "options": options}


def with_chart_objects(synthesis: Synthesis) -> list[ResourceRecord]:
    """The stack's resources plus, after each chart, the objects it renders (as records keyed
    under the chart), so a diff shows which rendered objects a value or version change touches."""
    records = []
    contents = chart_contents(synthesis)
    for record in synthesis.resources:
        if not record.custom:
            continue
        records.append(record)
        content = contents.get(record.urn)
        if isinstance(content, RenderedChart):
            records += [ResourceRecord(type=f"kubernetes:{obj['apiVersion']}:{obj['kind']}", name=object_label(obj),
                                       urn=f"{record.urn}/{obj['kind']}/{object_label(obj)}", id="", parent=record.urn,
                                       custom=True, inputs=obj, options={})
                        for obj in content.objects]
    return records


def diff(before: Synthesis, after: Synthesis, before_label: str, after_label: str) -> Diff:
    old = {_key(r): r for r in with_chart_objects(before)}
    new = {_key(r): r for r in with_chart_objects(after)}
    changed = []
    for key in sorted(old.keys() & new.keys()):
        old_values, new_values = dict(_flatten(_comparable(old[key]))), dict(_flatten(_comparable(new[key])))
        changes = [(path, old_values.get(path), new_values.get(path))
                   for path in sorted(old_values.keys() | new_values.keys())
                   if old_values.get(path) != new_values.get(path)]
        if changes:
            changed.append(ResourceChange(key, new[key].type, changes))
    return Diff(before_label, after_label, [new[k] for k in sorted(new.keys() - old.keys())],
                [old[k] for k in sorted(old.keys() - new.keys())], changed, estimate(before), estimate(after))


def _short_type(type_: str) -> str:
    return type_.rsplit(":", 1)[-1]


def diff_text(result: Diff, markdown: bool = False) -> str:
    title = f"Changes from {result.before} to {result.after}"
    counts = f"{len(result.added)} to add, {len(result.changed)} to change, {len(result.removed)} to remove"
    lines = [f"### {title}" if markdown else title, "", counts, ""]
    if markdown:
        lines.append("```diff")
    for record in result.added:
        lines.append(f"+ {_short_type(record.type)} {record.name}")
    for record in result.removed:
        lines.append(f"- {_short_type(record.type)} {record.name}")
    for change in result.changed:
        lines.append(f"~ {_short_type(change.type)} {change.key.rsplit('::', 1)[-1]}")
        lines += [f"    {path}: {_show_value(old)} => {_show_value(new)}" for path, old, new in change.changes]
    if markdown:
        lines.append("```")
    before, after = result.cost_before, result.cost_after
    delta_min, delta_max = after.minimum - before.minimum, after.maximum - before.maximum
    lines += ["", (f"Estimated monthly cost: {_money(before.minimum)} .. {_money(before.maximum)} => "
                   f"{_money(after.minimum)} .. {_money(after.maximum)} "
                   f"({'+' if delta_min >= 0 else '-'}{_money(abs(delta_min))} .. "
                   f"{'+' if delta_max >= 0 else '-'}{_money(abs(delta_max))})")]
    return "\n".join(lines)


def diff_json(result: Diff) -> str:
    return json.dumps({
        "before": result.before, "after": result.after,
        "added": [{"type": r.type, "name": r.name} for r in result.added],
        "removed": [{"type": r.type, "name": r.name} for r in result.removed],
        "changed": [{"type": c.type, "key": c.key,
                     "changes": [{"path": p, "before": o, "after": n} for p, o, n in c.changes]}
                    for c in result.changed],
        "cost": {"before": result.cost_before.to_dict(), "after": result.cost_after.to_dict()},
    }, indent=2, default=str)


# ---------------------------------------------------------------------------
# The same stack at another git revision
# ---------------------------------------------------------------------------


def synthesize_revision(stack: str, revision: str) -> Synthesis:
    """Run that revision's own program and synthesis in a scratch copy of the tree."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=PROJECT_DIR,
                             capture_output=True)
    if archive.returncode != 0:
        raise ValueError(f"git cannot read revision {revision!r}: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="plan-base-") as directory:
        try:
            with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
                tar.extractall(directory, filter="data")
        except tarfile.TarError as error:
            raise ValueError(f"cannot unpack revision {revision}: {error}") from None
        # Each revision runs its own synthesis, wherever that revision keeps it.
        runners = (("review.synth", "review/synth.py"), ("infra.synth", "infra/synth.py"))
        runner = next((module for module, path in runners if (Path(directory) / path).exists()), None)
        if runner is None:
            raise ValueError(f"revision {revision} has no review/synth.py to synthesize it offline")
        result = subprocess.run([sys.executable, "-m", runner, stack, "--json"], cwd=directory,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ValueError(f"synthesizing {stack} at {revision} failed:\n{result.stderr.strip()}")
    return Synthesis.from_json(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="what one stack declares, and its cost")
    show_parser.add_argument("stack")
    diff_parser = commands.add_parser("diff", help="compare two stacks, or one stack at two revisions")
    diff_parser.add_argument("stacks", nargs="+", metavar="stack")
    diff_parser.add_argument("--base", help="git revision to compare the stack against (e.g. origin/main)")
    for sub in (show_parser, diff_parser):
        sub.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    options = parser.parse_args(argv)
    try:
        if options.command == "show":
            print(show(synthesize(options.stack), options.format))
            return 0
        if options.base:
            if len(options.stacks) != 1:
                parser.error("with --base, name one stack")
            stack = options.stacks[0]
            result = diff(synthesize_revision(stack, options.base), synthesize(stack),
                          f"{stack} at {options.base}", f"{stack} in the working tree")
        else:
            if len(options.stacks) != 2:
                parser.error("name two stacks, or one stack and --base REVISION")
            first, second = options.stacks
            result = diff(synthesize(first), synthesize(second), first, second)
    except (StackConfigError, PriceError, FileNotFoundError, ValueError, yaml.YAMLError) as error:
        print(error, file=sys.stderr)
        return 2
    print(diff_json(result) if options.format == "json" else diff_text(result, options.format == "markdown"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
