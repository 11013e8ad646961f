"""The deployment's dependency graph: what the engine waits for before creating a resource."""

from __future__ import annotations

from review.records import ResourceRecord, Synthesis


def waits_for(synthesis: Synthesis, record: ResourceRecord) -> set[str]:
    """URNs a resource waits for, directly or through what it waits for: explicit depends_on, the
    resources its inputs came from, and the children of a component it waits for."""
    seen: set[str] = set()
    pending = [record]
    while pending:
        current = pending.pop()
        direct = set(current.options.get("dependencies", []))
        for urns in current.property_dependencies.values():
            direct.update(urns)
        for urn in direct - seen:
            seen.add(urn)
            dependency = synthesis.by_urn(urn)
            pending.append(dependency)
            if not dependency.custom:
                # Waiting for a component of ours means waiting for everything in it.
                pending.extend(child for child in synthesis.resources if child.parent == urn)
                seen.update(child.urn for child in synthesis.resources if child.parent == urn)
    return seen
