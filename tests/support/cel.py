"""The CEL rules of a CRD's schema (`x-kubernetes-validations`), evaluated as the API server does on
create, with cel-python: each rule against the value at its place in the object (every item of a
list, every value of a map), `self` bound to that value. JSON Schema validators skip these rules.

Kubernetes adds functions to CEL (https://kubernetes.io/docs/reference/using-api/cel/); the one these
CRDs use beyond standard CEL, `find` (regex) and `split`, are provided here. A rule that calls anything else fails to
evaluate, and the check fails with it, rather than passing unread. Transition rules (those reading
`oldSelf`) run only on update: they cannot be evaluated on a created object and are listed apart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes


@dataclass(frozen=True)
class Rule:
    path: str
    rule: str
    message: str


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    message: str


def _find(value: celtypes.StringType, pattern: celtypes.StringType) -> celtypes.StringType:
    """Kubernetes' `<string>.find(<regex>)`: the first match, or the empty string."""
    found = re.search(str(pattern), str(value))
    return celtypes.StringType(found.group(0) if found else "")


def _split(value: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    """Kubernetes' `<string>.split(<separator>)`."""
    return celtypes.ListType([celtypes.StringType(part) for part in str(value).split(str(separator))])


FUNCTIONS = {"find": _find, "split": _split}
_ENVIRONMENT = celpy.Environment()


def rules(schema: dict[str, Any], path: str = "") -> Iterator[Rule]:
    """Every rule of a schema, with where it applies (`[]` an item, `{}` a map value)."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield Rule(path or ".", rule["rule"], rule.get("message") or rule["rule"])
    for key, child in (schema.get("properties") or {}).items():
        yield from rules(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from rules(schema["additionalProperties"], f"{path}{{}}")


def is_transition(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def _evaluate(rule: str, value: Any) -> bool:
    program = _ENVIRONMENT.program(_ENVIRONMENT.compile(rule), functions=FUNCTIONS)
    result = program.evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    return bool(result)


def violations(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[Violation]:
    """The create-time rules the value breaks (an evaluation error raises: a rule left unread is no pass)."""
    for rule in schema.get("x-kubernetes-validations") or []:
        if not is_transition(rule["rule"]) and not _evaluate(rule["rule"], value):
            yield Violation(path or ".", rule["rule"], rule.get("message") or rule["rule"])
    if isinstance(value, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in value:
                yield from violations(child, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, child_value in value.items():
                yield from violations(extra, child_value, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from violations(schema["items"], item, f"{path}[{index}]")


def crd_schema(crds: list[dict[str, Any]], api_version: str, kind: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    for crd in crds:
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            for served in crd["spec"]["versions"]:
                if served["name"] == version:
                    schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
                    return schema
    raise LookupError(f"no CRD serves {api_version} {kind}")
