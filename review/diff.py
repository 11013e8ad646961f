"""What changes between two syntheses: the resources added, removed and changed (with each changed
property), the objects their charts render included, and the change in the monthly cost range.

Resources are matched by URN without stack and project, so two stacks compare like one stack at two
revisions. Secret values were replaced by "[secret]" when the program was synthesized, so they cannot
appear here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from review.cost import CostEstimate, estimate, money
from review.records import ResourceRecord, Synthesis
from review.rendering import RenderedChart
from review.summary import chart_contents, object_label

MAX_VALUE_CHARS = 80


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
    lines += ["", (f"Estimated monthly cost: {money(before.minimum)} .. {money(before.maximum)} => "
                   f"{money(after.minimum)} .. {money(after.maximum)} "
                   f"({'+' if delta_min >= 0 else '-'}{money(abs(delta_min))} .. "
                   f"{'+' if delta_max >= 0 else '-'}{money(abs(delta_max))})")]
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
