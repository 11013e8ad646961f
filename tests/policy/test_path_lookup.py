"""review.records.value_at and policy.rules.Resource.get are two copies of one path lookup (the policy
pack runs alone in its own venv and cannot import review): one table of cases holds both to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy.rules import Resource
from review.records import value_at

PROPS: dict[Any, Any] = {
    "tags": {"stack": "prod"},
    "rules": [{"scanFrequency": "SCAN_ON_PUSH"}, {"scanFrequency": "MANUAL"}, {"scanFrequency": "CONTINUOUS_SCAN"}],
    "empty": [],
    "name": "model-server",
    "replicas": 3,
    "image": None,
    "by_index": {0: "a map keyed by an int is still a map"},
}

# (path, value): the value where the path leads, or None where it stops.
CASES: list[tuple[tuple[str | int, ...], Any]] = [
    ((), PROPS),
    (("tags",), {"stack": "prod"}),
    (("tags", "stack"), "prod"),
    (("missing",), None),
    (("tags", "missing"), None),
    (("missing", "deeper", 0), None),
    (("name", "first"), None),  # into a string
    (("name", 0), None),  # a string is not a list
    (("replicas", "value"), None),  # into a number
    (("replicas", 0), None),
    (("rules", 0, "scanFrequency"), "SCAN_ON_PUSH"),
    (("rules", 2, "scanFrequency"), "CONTINUOUS_SCAN"),
    (("rules", 3), None),  # one past the end
    (("rules", 3, "scanFrequency"), None),
    (("rules", -1, "scanFrequency"), "CONTINUOUS_SCAN"),
    (("rules", -3, "scanFrequency"), "SCAN_ON_PUSH"),  # -len: the first
    (("rules", -4), None),  # -len-1: before the first
    (("rules", -4, "scanFrequency"), None),
    (("empty", 0), None),
    (("empty", -1), None),
    (("image",), None),
    (("image", "tag"), None),  # through a None
    (("image", 0), None),
    (("by_index", 0), None),  # an int key indexes lists only
    ((0,), None),
    (("rules", "0"), None),  # a str key on a list
    (("rules", "scanFrequency"), None),  # a list is not a map
]

LOOKUPS: dict[str, Callable[..., Any]] = {
    "review.records.value_at": lambda *path: value_at(PROPS, *path),
    "policy.rules.Resource.get": lambda *path: Resource("t", "n", PROPS).get(*path),
}


@pytest.mark.parametrize("lookup", LOOKUPS.values(), ids=LOOKUPS.keys())
@pytest.mark.parametrize(("path", "expected"), CASES, ids=[repr(path) for path, _ in CASES])
def test_a_path_leads_to_its_value_or_stops_at_none(
        lookup: Callable[..., Any], path: tuple[str | int, ...], expected: Any) -> None:
    assert lookup(*path) == expected
