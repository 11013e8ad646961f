"""The policy pack: `pulumi preview --policy-pack policy` runs the rules in rules.py."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, PolicyPack, PolicyResource, StackValidationArgs, StackValidationPolicy

from rules import RULES, Resource, Rule


def as_resource(resource: PolicyResource, seen: dict[str, Resource]) -> Resource:
    if resource.urn in seen:
        return seen[resource.urn]
    converted = Resource(resource.resource_type, resource.name, dict(resource.props),
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


PolicyPack(name="model-serving", policies=[stack_policy(rule) for rule in RULES])
