"""Stack config as Pulumi hands it over (strings) → validated `StackSettings`, or one error
listing every problem."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from infra.settings.checks import CROSS_CHECKS
from infra.settings.models import ConfigModel, StackSettings
from infra.settings.problems import Invalid, Problem, StackConfigError, key_path, problem, set_command

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
PROJECT_FILE = PROJECT_DIR / "Pulumi.yaml"
# Supplied by the Pulumi runtime, not by config.
RUNTIME_FIELDS = frozenset({"project", "stack"})


def declared_keys(project_file: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The `config:` declarations of Pulumi.yaml (key → type, description, default)."""
    declarations: dict[str, dict[str, Any]] = yaml.safe_load(project_file.read_text())["config"]
    return declarations


def project_name(project_file: Path = PROJECT_FILE) -> str:
    return str(yaml.safe_load(project_file.read_text())["name"])


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {', '.join(map(repr, duplicates))}")
    return dict(pairs)


def decode_config(raw: Mapping[str, str], project: str, declarations: Mapping[str, Mapping[str, Any]],
                  ) -> tuple[dict[str, Any], list[Problem]]:
    """Pulumi hands config to the program as strings (structured values JSON-encoded).
    Keep this project's keys, decode the structured ones, report undeclared keys."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    prefix = f"{project}:"
    for full_key, text in raw.items():
        if not full_key.startswith(prefix):
            continue  # other namespaces (aws:, pulumi:) belong to providers and the engine
        key = full_key[len(prefix):]
        declaration = declarations.get(key)
        if declaration is None:
            close = difflib.get_close_matches(key, declarations, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(problem("is not a config key of this project (Pulumi.yaml declares them all)",
                                    f"{hint}remove it: pulumi config rm {key}", key))
            continue
        if declaration.get("type") in ("array", "object"):
            try:
                values[key] = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
            except ValueError as error:
                problems.append(problem(f"is not valid structured config: {error}",
                                        f"set it again with pulumi config set --path '{key}...'", key))
                continue
        else:
            values[key] = text
    return values, problems


def _setting_names() -> set[str]:
    return {field.alias or name for model in ConfigModel.__subclasses__() for name, field in model.model_fields.items()}


def _problems_in(error: ValidationError, prefix: tuple[str | int, ...]) -> Iterator[Problem]:
    for detail in error.errors():
        loc = prefix + tuple(detail["loc"])
        path = key_path(loc)
        raised = (detail.get("ctx") or {}).get("error")
        if isinstance(raised, Invalid):
            yield from (found.under(path) for found in raised.problems)
        elif detail["type"] == "missing":
            yield problem("is required", set_command(path, "<value>"), path)
        elif detail["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _setting_names(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            yield problem("is not a known setting here", f"{hint}remove it: pulumi config rm --path '{path}'", path)
        else:
            yield problem(f"{detail['msg']} (got {detail['input']!r})", set_command(path, "<valid value>"), path)


def load_settings(raw_config: Mapping[str, str], *, project: str, stack: str,
                  project_file: Path = PROJECT_FILE) -> StackSettings:
    """Validate a stack's whole config; raise StackConfigError listing every problem."""
    declarations = declared_keys(project_file)
    values, problems = decode_config(raw_config, project, declarations)
    # A key whose value could not be decoded is reported once, as such, not again as missing.
    undecodable = {found.path for found in problems}

    parsed: dict[str, Any] = {}
    for name, field in StackSettings.model_fields.items():
        if name in RUNTIME_FIELDS:
            continue
        key = field.alias or name
        if key not in values:
            if key not in undecodable:
                problems.append(problem("is required (declared in Pulumi.yaml without a default)",
                                        set_command(key, "<value>"), key))
            continue
        annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            parsed[name] = adapter.validate_python(values[key])
        except ValidationError as error:
            problems.extend(_problems_in(error, (key,)))

    for check in CROSS_CHECKS:
        if check.inputs <= parsed.keys():
            problems.extend(check.run(StackSettings.model_construct(**{name: parsed[name] for name in check.inputs})))

    if problems:
        raise StackConfigError(stack, problems)
    # Every field was validated above, one by one; build the model from those values.
    return StackSettings.model_construct(project=project, stack=stack, **parsed)


def settings_from_runtime() -> StackSettings:
    """The running stack's settings. The Python language host passes config as the
    PULUMI_CONFIG environment variable; tests and offline synthesis set it in-process."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load_settings(raw, project=pulumi.get_project(), stack=pulumi.get_stack())
