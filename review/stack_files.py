"""Stack config as the Pulumi CLI would hand it to the program: Pulumi.yaml defaults plus the
stack file's values, every value a string (structured ones JSON), secrets as placeholders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.settings import PROJECT_DIR, declared_keys, project_name

SECRET = "[secret]"


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a key given twice (PyYAML would silently keep the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice (the second would silently win)", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _as_config_string(value: Any) -> str:
    """Pulumi passes scalars as strings and structured values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None,
                 project_dir: Path = PROJECT_DIR) -> tuple[dict[str, str], list[str]]:
    """Pulumi.yaml defaults + Pulumi.<stack>.yaml values (+ overrides, keyed without namespace),
    as strings. Secure values become placeholders; their keys are returned as secret."""
    project = project_name(project_dir / "Pulumi.yaml")
    values: dict[str, Any] = {
        f"{project}:{key}": declaration["default"]
        for key, declaration in declared_keys(project_dir / "Pulumi.yaml").items()
        if "default" in declaration
    }
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise FileNotFoundError(f"no stack file {stack_file.name}; stacks: "
                                + ", ".join(p.name[7:-5] for p in sorted(project_dir.glob("Pulumi.*.yaml"))))
    document = yaml.load(stack_file.read_text(), Loader=_UniqueKeyLoader) or {}
    values.update(document.get("config") or {})
    for key, value in (overrides or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if value is None:
            values.pop(full_key, None)
        else:
            values[full_key] = value
    secret_keys = [key for key, value in values.items() if isinstance(value, dict) and set(value) == {"secure"}]
    return ({key: SECRET if key in secret_keys else _as_config_string(value) for key, value in values.items()},
            secret_keys)
