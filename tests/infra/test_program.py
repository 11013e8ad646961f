"""The whole program, synthesized for each committed stack with its real stack file."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest
import yaml

from infra.settings import PROJECT_DIR
from review.records import Synthesis
from review.synth import synthesize

REQUIRED_TAGS = {"project", "stack", "managed-by"}
OUTPUTS = {"vpcId", "privateSubnetIds", "publicSubnetIds", "clusterName", "clusterEndpoint", "kubeconfig",
           "ecrRepositoryUrl", "nodePools"}


def takes_tags(type_token: str) -> bool:
    """Whether the pulumi_aws resource behind a type token has a `tags` input."""
    _package, module_path, class_name = type_token.split(":")
    module_name = module_path.split("/")[0]
    module = importlib.import_module("pulumi_aws" if module_name == "index" else f"pulumi_aws.{module_name}")
    args_class = getattr(module, f"{class_name}Args")
    return "tags" in inspect.signature(args_class.__init__).parameters


def test_outputs(stack_synthesis: Synthesis) -> None:
    assert set(stack_synthesis.outputs) >= OUTPUTS
    assert stack_synthesis.outputs["clusterName"] == f"model-serving-{stack_synthesis.stack}"
    assert stack_synthesis.outputs["ecrRepositoryUrl"].endswith(f"model-serving-{stack_synthesis.stack}/model-server")
    assert set(stack_synthesis.outputs["nodePools"]) == {"cpu", "gpu"}
    assert stack_synthesis.outputs["nodePools"]["gpu"]["gpu"] is True


def test_every_taggable_aws_resource_carries_the_required_tags(stack_synthesis: Synthesis) -> None:
    aws_resources = [r for r in stack_synthesis.resources if r.type.startswith("aws:")]
    taggable = [r for r in aws_resources if takes_tags(r.type)]
    assert len(taggable) > 20
    for record in taggable:
        tags = record.inputs.get("tags") or {}
        assert set(tags) >= REQUIRED_TAGS, f"{record.type} {record.name} lacks {REQUIRED_TAGS - set(tags)}"
        assert tags["stack"] == stack_synthesis.stack


def test_every_aws_resource_uses_the_explicit_regional_provider(stack_synthesis: Synthesis) -> None:
    provider = stack_synthesis.one("pulumi:providers:aws")
    region = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack_synthesis.stack}.yaml").read_text())[
        "config"]["model-serving:region"]
    assert provider.inputs["region"] == region
    for record in stack_synthesis.resources:
        if record.type.startswith("aws:"):
            assert record.options["provider"] == "aws", f"{record.name} would use the default provider"


def test_stack_files_disable_default_providers() -> None:
    for stack in ("dev", "staging", "prod"):
        config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert {"aws", "kubernetes"} <= set(config["pulumi:disable-default-providers"])


def test_every_project_key_is_declared_with_a_type_pulumi_accepts_and_a_description() -> None:
    declarations = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["config"]
    for key, declaration in declarations.items():
        assert declaration.get("description"), key
        # Pulumi accepts these scalar types; object-valued keys leave the type out (pulumi/pulumi#11321).
        assert declaration.get("type", "object") in {"string", "integer", "boolean", "array", "object"}, key
        if declaration.get("type") == "array":
            assert "items" in declaration, key
        if "type" not in declaration:
            assert isinstance(declaration.get("default"), dict), key


def test_stack_files_hold_only_values_for_declared_keys() -> None:
    declarations = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())["config"]
    for stack in ("dev", "staging", "prod"):
        config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in config:
            namespace, name = key.split(":", 1)
            assert namespace in {"model-serving", "pulumi"}, key
            if namespace == "model-serving":
                assert name in declarations, key


def test_invalid_config_declares_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.settings import StackConfigError
    from review import mocks as synth

    registered: list[str] = []
    original = synth.RecordingMonitor.RegisterResource

    def counting(self: synth.RecordingMonitor, request: object) -> object:
        if request.type != "pulumi:pulumi:Stack":  # type: ignore[attr-defined]  # the root, always there
            registered.append(request.name)  # type: ignore[attr-defined]
        return original(self, request)

    monkeypatch.setattr(synth.RecordingMonitor, "RegisterResource", counting)
    with pytest.raises(StackConfigError, match="azCount"):
        synthesize("dev", {"azCount": 1})
    assert registered == []
    synthesize("dev")
    assert len(registered) > 40  # the counter does see a valid program's resources


def test_synth_cli_prints_the_plans_summary_and_json() -> None:
    summary = subprocess.run([sys.executable, "-m", "review.synth", "prod"], capture_output=True, text=True,
                             check=True, cwd=PROJECT_DIR).stdout
    assert "NodeGroup" in summary and "[protected]" in summary and "kubeconfig: [secret]" in summary
    import json

    record = json.loads(subprocess.run([sys.executable, "-m", "review.synth", "prod", "--json"],
                                       capture_output=True, text=True, check=True, cwd=PROJECT_DIR).stdout)
    assert record["stack"] == "prod" and len(record["resources"]) > 40


def test_synth_cli_reports_bad_config_without_a_traceback(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "review.synth", "nosuchstack"], capture_output=True,
                            text=True, cwd=PROJECT_DIR)
    assert result.returncode == 2
    assert "no stack file Pulumi.nosuchstack.yaml" in result.stderr
    assert "Traceback" not in result.stderr
