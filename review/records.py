"""What offline synthesis records: every resource the program declares, with its type, name,
parent, inputs and options, and the stack's outputs. Tests and the plan read these."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ResourceRecord:
    type: str
    name: str
    urn: str
    id: str
    parent: str | None
    # A custom resource, or a remote component (helm.v4.Chart) that the provider expands:
    # either way something the deployment declares, not just a grouping of ours.
    custom: bool
    inputs: dict[str, Any]
    options: dict[str, Any]
    # input property → URNs of the resources its value came from
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def get(self, *path: str | int) -> Any:
        """The input at a path (`record.get("spec", "template", "spec")`), or None where it stops."""
        return value_at(self.inputs, *path)


def value_at(value: Any, *path: str | int) -> Any:
    # Its twin is policy.rules.Resource.get (the policy pack cannot import review); one table of cases
    # holds both to the same answers (tests/policy/test_path_lookup.py).
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


@dataclass
class Synthesis:
    project: str
    stack: str
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Each lookup (invoke) the program made: {"token", "args" (wire names), "provider" (its name)}.
    invokes: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> ResourceRecord:
        matches = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(matches) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in matches]}")
        return matches[0]

    def objects(self, kind: str, namespace: str | None = None) -> list[ResourceRecord]:
        """Kubernetes objects the program declares, by kind (and namespace), whatever their API group."""
        return [r for r in self.resources if r.type.startswith("kubernetes:") and r.get("kind") == kind
                and (namespace is None or r.get("metadata", "namespace") == namespace)]

    def object(self, kind: str, name: str, namespace: str | None = None) -> ResourceRecord:
        """The one Kubernetes object of this kind and metadata name (in the namespace, if given)."""
        matches = [r for r in self.objects(kind, namespace) if r.get("metadata", "name") == name]
        if len(matches) != 1:
            raise LookupError(f"expected one {kind} {name}, found {len(matches)}")
        return matches[0]

    def by_urn(self, urn: str) -> ResourceRecord:
        return next(r for r in self.resources if r.urn == urn)

    def component_of(self, record: ResourceRecord) -> ResourceRecord | None:
        """The outermost component a resource belongs to (None for top-level resources)."""
        outer: ResourceRecord | None = None
        current = record
        while current.parent is not None:
            current = self.by_urn(current.parent)
            outer = current
        return outer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Synthesis:
        document = json.loads(text)
        known = {f.name for f in fields(ResourceRecord)}
        # Records written by an older revision may lack newer fields.
        resources = [ResourceRecord(**{"id": "", **{k: v for k, v in record.items() if k in known}})
                     for record in document["resources"]]
        return cls(project=document["project"], stack=document["stack"], resources=resources,
                   outputs=document["outputs"], invokes=document.get("invokes", []))
