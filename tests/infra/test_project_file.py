"""Pulumi.yaml and the stack files, checked the way the Pulumi CLI checks them: the project file
against the CLI's own JSON schema, and each stack's values against the types the project declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infra.settings import PROJECT_DIR, declared_keys
from tests.support.shared import reference_file
from tests.support.stacks import STACKS

SCHEMA_URL = "https://raw.githubusercontent.com/pulumi/pulumi/master/sdk/go/common/workspace/project.json"
# What a stack file may hold besides config (https://www.pulumi.com/docs/iac/concepts/projects/stack-settings-file/).
STACK_FILE_KEYS = {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}
JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def project_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(reference_file("pulumi-project.schema.json", SCHEMA_URL).read_text())
    return schema


def project_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(project_schema())
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_project_file_matches_the_pulumi_cli_schema() -> None:
    assert project_errors(yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())) == []


def test_the_schema_check_catches_an_undeclared_type() -> None:
    document = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    document["config"]["nodePools"]["type"] = "map"
    assert any(error.startswith("config.nodePools") for error in project_errors(document))


def test_object_keys_are_declared_as_objects() -> None:
    """The CLI accepts `type: object` since 3.186; every key the program decodes as JSON says so."""
    assert {key for key, declaration in declared_keys().items() if declaration["type"] == "object"} == {
        "nodePools", "systemPool", "modelService", "observability"}


def stack_errors(path: Path) -> list[str]:
    document = yaml.safe_load(path.read_text()) or {}
    errors = [f"{key}: not a stack file setting" for key in set(document) - STACK_FILE_KEYS]
    declarations = declared_keys()
    for full_key, value in (document.get("config") or {}).items():
        namespace, key = full_key.split(":", 1)
        if namespace != "model-serving":
            continue
        declared = declarations.get(key)
        if declared is None:
            errors.append(f"{key}: not declared in Pulumi.yaml")
            continue
        expected = JSON_TYPES[declared["type"]]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            errors.append(f"{key}: {value!r} is not of type {declared['type']}")
        elif expected is list:
            item_type = JSON_TYPES[declared["items"]["type"]]
            errors += [f"{key}[{i}]: {item!r} is not {declared['items']['type']}"
                       for i, item in enumerate(value) if not isinstance(item, item_type)]
    return errors


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_have_the_declared_types(stack: str) -> None:
    assert stack_errors(PROJECT_DIR / f"Pulumi.{stack}.yaml") == []


def test_the_stack_check_catches_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  model-serving:azCount: three\n  model-serving:nodePools: [cpu]\nsecrets: x\n")
    assert sorted(stack_errors(bad)) == ["azCount: 'three' is not of type integer",
                                        "nodePools: ['cpu'] is not of type object", "secrets: not a stack file setting"]
