"""The policy pack: `pulumi preview --policy-pack policy` runs the rules in rules.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import EnforcementLevel, PolicyPack, PolicyResource, StackValidationArgs, StackValidationPolicy
from pulumi_policy.proxy import UnknownValueError

from rules import RULES, Resource, Rule

PACK_NAME = "model-serving"


def plain(value: Any) -> Any:
    """The engine's read-only proxies (Mapping, Sequence) as the dicts and lists the rules read. A value
    not known yet in a preview raises when read: a map leaves it out and a list holds None, which the
    rules take as not known (never guessed)."""
    if isinstance(value, Mapping):
        known: dict[str, Any] = {}
        for key in value:
            try:
                known[key] = plain(value[key])
            except UnknownValueError:
                continue
        return known
    if isinstance(value, Sequence) and not isinstance(value, str):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(None)
        return items
    return value


def as_resource(resource: PolicyResource, seen: dict[str, Resource]) -> Resource:
    if resource.urn in seen:
        return seen[resource.urn]
    converted = Resource(resource.resource_type, resource.name, plain(resource.props),
                         bool(resource.opts.protect) if resource.opts else False)
    seen[resource.urn] = converted
    converted.property_dependencies = {key: [as_resource(dep, seen) for dep in deps]
                                       for key, deps in (resource.property_dependencies or {}).items()}
    return converted


def stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation) -> None:  # type: ignore[no-untyped-def]
        seen: dict[str, Resource] = {}
        for resource in args.resources:
            for message in rule.violations(as_resource(resource, seen)):
                report_violation(message, resource.urn)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 enforcement_level=EnforcementLevel.MANDATORY)


def policies() -> list[StackValidationPolicy]:
    return [stack_policy(rule) for rule in RULES]


def serve() -> None:
    """Serve the pack to the engine. PolicyPack starts its gRPC server, prints the port and never returns."""
    PolicyPack(name=PACK_NAME, policies=policies())


# The engine runs this file as __main__ (pulumi-analyzer-policy-python: `python -m pulumi.policy ENGINE .`,
# which calls runpy.run_path(".", run_name="__main__")); the tests import it and must not block in serve().
if __name__ == "__main__":
    serve()
