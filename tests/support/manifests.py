"""Validating Kubernetes objects: built-in kinds against the cluster version's OpenAPI schema
(kubernetes-validate, strict), custom resources against the schema of the CRD that defines them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

import jsonschema
import kubernetes_validate

# Fields every object carries whether or not a CRD's schema lists them.
OBJECT_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema as the API server applies it with strict field validation: an object schema
    listing its properties rejects any other (unless it says x-kubernetes-preserve-unknown-fields).
    Go's regular expressions allow flags after `^` (`^(?i)...`); Python wants them first."""
    schema = dict(schema)
    if isinstance(schema.get("pattern"), str):
        schema["pattern"] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", schema["pattern"])
    if "properties" in schema:
        schema["properties"] = {key: _strict(value) for key, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(option) for option in schema[key]]
    return schema


def crd_schemas(crds: Iterable[dict[str, Any]]) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) → a validator of the strict schema, for every served version of every CRD.
    OpenAPI v3 schemas are close to JSON Schema draft 7."""
    schemas = {}
    for crd in crds:
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            schema["properties"] = {**OBJECT_FIELDS, **schema.get("properties", {})}
            schemas[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(_strict(schema))
    return schemas


def validate(obj: dict[str, Any], kubernetes_version: str,
             custom: dict[tuple[str, str], jsonschema.protocols.Validator]) -> None:
    """Raise if the object would be rejected: a custom resource by its CRD, anything else by Kubernetes."""
    validator = custom.get((obj["apiVersion"], obj["kind"]))
    if validator is not None:
        validator.validate(obj)
    else:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
