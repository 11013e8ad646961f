"""Canary releases as the program declares them: an Argo Rollout with ping-pong Services behind the
ALB, judged by AnalysisTemplates, awaited by `pulumi up`; a plain rolling update with
`modelService.canary.enabled: false`; both during migration step 1 (`canary.adoptDeployment`).

Each test reads what a user would notice (the steps, the thresholds, what `pulumi up` waits for and
in which order) and cross-checks names both sides must agree on, so it fails when one side changes
alone. Argo Rollouts' controller is in test_release_control.py, KEDA's autoscaling in test_scaling.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from infra.settings import PROJECT_DIR, StackConfigError, StackSettings, load_settings
from infra.settings.artifact import ModelArtifact
from policy.rules import RULES, Resource
from review.diff import diff
from review.plan import show, synthesize_revision
from review.records import ResourceRecord, Synthesis
from review.stack_files import SECRET, stack_config
from review.synth import synthesize
from tests.support.graph import waits_for
from tests.support.manifests import crd_schemas, validate
from tests.support.prometheus import check_expressions
from tests.support.scheduling import selector_matches
from tests.support.stacks import STACKS, VARIANTS, synthesized, synthesized_variant, synthesized_with

NAMESPACE = "model-serving"
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
ANALYSIS = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
COMMAND = "command:local:Command"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
AUTOSCALER = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
USE_ANNOTATION = "use-annotation"
# main when canaries came: the last program whose model ran as a plain Deployment with a CPU HPA.
BEFORE_CANARIES = "a8ed0d709f0503537866e5149db30e9b1a3a151c"

# What each committed stack's config asks for (Pulumi.<stack>.yaml, else the defaults), written out.
STEPS = {
    "dev": [{"setWeight": 50}, {"pause": {"duration": "60s"}}],
    "staging": [{"setWeight": 10}, {"pause": {"duration": "120s"}}, {"setWeight": 50},
                {"pause": {"duration": "120s"}}],
    "prod": [{"setWeight": 10}, {"pause": {"duration": "120s"}}, {"setWeight": 50},
             {"pause": {"duration": "120s"}}],
}
# (5xx ratio, p99 latency in seconds, refusal increase, requests the canary must answer, traffic window)
THRESHOLDS = {"dev": (0.01, 0.25, 0.05, 20, "360s"), "staging": (0.01, 0.25, 0.05, 100, "540s"),
              "prod": (0.01, 0.2, 0.05, 100, "540s")}
RELEASE_TIMEOUT_MINUTES = {"dev": 15, "staging": 30, "prod": 30}


# -- helpers --------------------------------------------------------------------------------------------

def stack_model(stack: str) -> dict[str, Any]:
    """The stack file's own modelService settings."""
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    return dict(config.get("model-serving:modelService") or {})


def model_overrides(stack: str, **canary: Any) -> dict[str, Any]:
    """Overrides that change canary settings only (an override replaces the whole modelService key)."""
    model = stack_model(stack)
    return {"modelService": {**model, "canary": {**model.get("canary", {}), **canary}}}


def with_canary(stack: str, **canary: Any) -> Synthesis:
    return synthesized_with(stack, model_overrides(stack, **canary))


def without_canaries(stack: str) -> Synthesis:
    return with_canary(stack, enabled=False)


def migrating(stack: str) -> Synthesis:
    """Migration step 1: the Rollout starts beside the Deployment it will replace."""
    return with_canary(stack, adoptDeployment=True)


def one(synthesis: Synthesis, kind: str, name: str = "model-server") -> ResourceRecord:
    return synthesis.object(kind, name, namespace=NAMESPACE)


def rollout(synthesis: Synthesis) -> ResourceRecord:
    return one(synthesis, "Rollout")


def canary_strategy(synthesis: Synthesis) -> dict[str, Any]:
    strategy: dict[str, Any] = rollout(synthesis).inputs["spec"]["strategy"]["canary"]
    return strategy


def ingress(synthesis: Synthesis) -> ResourceRecord:
    (record,) = synthesis.objects("Ingress", namespace=NAMESPACE)
    return record


def service(synthesis: Synthesis, name: str) -> ResourceRecord:
    return one(synthesis, "Service", name)


def templates(synthesis: Synthesis) -> dict[str, ResourceRecord]:
    return {record.get("metadata", "name"): record for record in synthesis.objects("AnalysisTemplate", NAMESPACE)}


def metrics(synthesis: Synthesis, template: str) -> dict[str, dict[str, Any]]:
    return {metric["name"]: metric for metric in templates(synthesis)[template].inputs["spec"]["metrics"]}


def release_command(synthesis: Synthesis) -> ResourceRecord:
    return synthesis.one(COMMAND, "model-release")


def canary_variants() -> list[str]:
    """Every variant that releases canaries: the committed stacks and the GPU/HTTPS and 1.36 ones."""
    return sorted(VARIANTS)


def analysis_refs(strategy: dict[str, Any]) -> list[dict[str, Any]]:
    """Each analysis the Rollout runs: the background one, and every analysis step."""
    return [strategy["analysis"], *(step["analysis"] for step in strategy["steps"] if "analysis" in step)]


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_anywhere(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_anywhere(item)}
    return set()


def declared_objects(synthesis: Synthesis) -> list[ResourceRecord]:
    return [r for r in synthesis.resources if r.type.startswith("kubernetes:") and r.custom
            and "helm.sh" not in r.type and not r.type.startswith("pulumi:")]


def problems(stack: str, **overrides: Any) -> dict[str, str]:
    """path → 'message / fix' for each problem the settings report."""
    raw, _ = stack_config(stack, overrides)
    with pytest.raises(StackConfigError) as caught:
        load_settings(raw, project="model-serving", stack=stack)
    return {p.path: f"{p.message} / {p.fix}" for p in caught.value.problems}


# -- 1. every stack releases its model as a canary ---------------------------------------------------------

def test_every_stack_releases_the_model_as_a_canary_with_its_own_steps(stack_synthesis: Synthesis) -> None:
    stack = stack_synthesis.stack
    record = rollout(stack_synthesis)
    spec = record.inputs["spec"]
    # KEDA owns the count (test_scaling.py): a declared one would undo its scaling at every `pulumi up`.
    assert "replicas" not in spec
    assert spec["revisionHistoryLimit"] == 5 and spec["rollbackWindow"] == {"revisions": 3}
    assert (spec["progressDeadlineSeconds"], spec["progressDeadlineAbort"]) == (600, True)
    canary = spec["strategy"]["canary"]
    assert canary["dynamicStableScale"] is False  # the stable pods stay: an abort moves all traffic back at once
    assert (canary["abortScaleDownDelaySeconds"], canary["scaleDownDelaySeconds"]) == (30, 30)
    # The configured steps, then the traffic check, then promotion.
    *steps, check = canary["steps"]
    assert steps == STEPS[stack]
    assert check == {"analysis": {"templates": [{"templateName": "model-server-canary-traffic"}], "args": [
        {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}}
    # Judged in the background from the first step on (no startingStep), on both revisions' series.
    assert canary["analysis"] == {"templates": [{"templateName": "model-server-canary-health"}], "args": [
        {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
        {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}]}
    assert canary["pingPong"] == {"pingService": "model-server-ping", "pongService": "model-server-pong"}
    assert canary["trafficRouting"] == {"alb": {"ingress": "model-server", "rootService": "model-server",
                                                "servicePort": 80}}
    assert not stack_synthesis.of_type(DEPLOYMENT) and not stack_synthesis.of_type(AUTOSCALER)


def test_steps_come_from_config_and_a_step_without_a_pause_has_none() -> None:
    synthesis = with_canary("dev", steps=[{"weight": 5, "pauseSeconds": 0}, {"weight": 25, "pauseSeconds": 30},
                                          {"weight": 75, "pauseSeconds": 90}], releaseTimeoutMinutes=10)
    *steps, check = canary_strategy(synthesis)["steps"]
    assert steps == [{"setWeight": 5}, {"setWeight": 25}, {"pause": {"duration": "30s"}}, {"setWeight": 75},
                     {"pause": {"duration": "90s"}}]
    assert "analysis" in check
    # The traffic check looks back over the whole judged time (120 s) plus 300 s: the canary's counters start at 0.
    (requests,) = metrics(synthesis, "model-server-canary-traffic").values()
    assert "[420s]" in requests["provider"]["prometheus"]["query"]


def test_the_analysis_judges_each_stack_by_its_own_thresholds(stack_synthesis: Synthesis) -> None:
    error_ratio, latency_s, refusal, min_requests, window = THRESHOLDS[stack_synthesis.stack]
    health = metrics(stack_synthesis, "model-server-canary-health")
    assert list(health) == ["error-ratio", "p99-latency", "refusal-increase"]
    # No data (an empty or NaN result) is no evidence; a number above the bound fails the canary.
    for name, bound in (("error-ratio", error_ratio), ("p99-latency", latency_s), ("refusal-increase", refusal)):
        assert health[name]["failureCondition"] == f"len(result) > 0 && !isNaN(result[0]) && result[0] > {bound:g}"
    for metric in health.values():
        assert "count" not in metric  # until the release ends
        assert (metric["interval"], metric["failureLimit"], metric["consecutiveErrorLimit"]) == ("10s", 0, 4)
    (traffic,) = metrics(stack_synthesis, "model-server-canary-traffic").values()
    assert traffic["failureCondition"] == f"result[0] < {min_requests}"
    assert (traffic["count"], traffic["failureLimit"]) == (1, 0)
    assert f"[{window}]" in traffic["provider"]["prometheus"]["query"]


def test_every_threshold_is_read_from_config() -> None:
    model = stack_model("dev")
    synthesis = synthesized_with("dev", {
        "modelService": {**model, "canary": {**model["canary"], "maxErrorRatio": 0.02, "maxRefusalIncrease": 0.1,
                                             "minRequests": 7, "failureLimit": 2, "analysisIntervalSeconds": 30}},
        "observability": {"latencySloMs": 300}})
    health = metrics(synthesis, "model-server-canary-health")
    assert [health[name]["failureCondition"].rsplit(" ", 1)[1] for name in health] == ["0.02", "0.3", "0.1"]
    (traffic,) = metrics(synthesis, "model-server-canary-traffic").values()
    assert traffic["failureCondition"] == "result[0] < 7"
    for metric in [*health.values(), traffic]:
        assert (metric["interval"], metric["failureLimit"]) == ("30s", 2)


def test_the_analysis_asks_the_prometheus_the_stack_runs_valid_promql(tmp_path: Path) -> None:
    """Argo fills in {{args.*}}; with a hash in their place every query parses, and names the
    in-cluster Prometheus Service the metrics chart renders, on its port."""
    from tests.support.charts import rendered_chart

    synthesis = synthesized("prod")
    queries, addresses = {}, set()
    for name, record in templates(synthesis).items():
        for metric in record.inputs["spec"]["metrics"]:
            prometheus = metric["provider"]["prometheus"]
            addresses.add(prometheus["address"])
            queries[f"{name} {metric['name']}"] = re.sub(r"\{\{args\.[\w-]+\}\}", "5d4f8b9c7", prometheus["query"])
    assert all('rollouts_pod_template_hash="5d4f8b9c7"' in query for query in queries.values())
    result = check_expressions(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (address,) = addresses
    found = re.fullmatch(r"http://([\w-]+)\.([\w-]+)\.svc:(\d+)", address)
    assert found, address
    name, namespace, port = found.groups()
    prometheus = rendered_chart("prod", "kube-prometheus-stack").one("Service", name)
    assert prometheus["metadata"]["namespace"] == namespace
    assert int(port) in {p["port"] for p in prometheus["spec"]["ports"]}


# -- 2. canaries off: today's rolling update -----------------------------------------------------------

@functools.cache
def _before_canaries(stack: str) -> Synthesis | str:
    try:
        return synthesize_revision(stack, BEFORE_CANARIES)
    except ValueError as error:
        return str(error)


def before_canaries(stack: str) -> Synthesis:
    """The stack as the program declared it before canaries (main at BEFORE_CANARIES)."""
    result = _before_canaries(stack)
    if isinstance(result, str):
        pytest.skip(f"the program before canaries cannot be synthesized here (a shallow clone?): {result}")
    return copy.deepcopy(result)


# What the pods are told of the artifact since each model kind got its runtime: the program before
# left the format and the device to the server's auto.
ARTIFACT_VARIABLES = frozenset({"MODEL_FORMAT", "MODEL_DEVICE"})


def without_artifact(spec: dict[str, Any]) -> dict[str, Any]:
    """A workload's spec with the image and model digests blanked, and the artifact's format and
    device left out: they follow app/ and the artifact, not the program's release machinery."""
    spec = copy.deepcopy(spec)
    for container in spec["template"]["spec"]["containers"]:
        container["image"] = "<image>"
        container["env"] = [variable for variable in container["env"] if variable["name"] not in ARTIFACT_VARIABLES]
        for variable in container["env"]:
            if variable["name"] == "MODEL_SHA256":
                variable["value"] = "<model sha256>"
    return spec


@pytest.mark.parametrize("stack", STACKS)
def test_without_canaries_the_model_rolls_as_before(stack: str) -> None:
    synthesis = without_canaries(stack)
    deployment = synthesis.one(DEPLOYMENT)
    spec = deployment.inputs["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert deployment.options["ignoreChanges"] == ["spec.replicas"]
    assert not synthesis.of_type(ROLLOUT) and not synthesis.of_type(ANALYSIS) and not synthesis.of_type(COMMAND)
    assert not synthesis.objects("Service", NAMESPACE)[1:], "only the model's own Service, no ping or pong"
    (path,) = ingress(synthesis).inputs["spec"]["rules"][0]["http"]["paths"]
    assert path == {"path": "/", "pathType": "Prefix", "backend": {"service": {
        "name": "model-server", "port": {"name": "http"}}}}
    assert service(synthesis, "model-server").inputs["spec"]["ports"][0]["name"] == "http"
    # KEDA autoscales the Deployment, and takes over the CPU HPA a deployed stack has (same name).
    scaler = one(synthesis, "ScaledObject")
    assert scaler.inputs["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                       "name": deployment.get("metadata", "name")}
    assert scaler.inputs["metadata"]["annotations"] == {"scaledobject.keda.sh/transfer-hpa-ownership": "true"}
    assert scaler.inputs["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "model-server"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_without_canaries_the_deployment_service_and_ingress_are_what_the_previous_program_declared(
        stack: str) -> None:
    """Byte for byte, apart from the image and model digests (app/ changed since)."""
    before, after = before_canaries(stack), without_canaries(stack)
    old, new = before.one(DEPLOYMENT), after.one(DEPLOYMENT)
    assert without_artifact(new.inputs["spec"]) == without_artifact(old.inputs["spec"])
    assert new.inputs["metadata"] == old.inputs["metadata"]
    assert new.options["ignoreChanges"] == old.options["ignoreChanges"]
    for kind in ("Service", "Ingress"):
        assert one(after, kind).inputs["spec"] == one(before, kind).inputs["spec"], kind


# -- 3. cross-checks: the names each side of the canary must agree on ---------------------------------

@pytest.mark.parametrize("variant", canary_variants())
def test_the_ingress_sends_requests_to_the_root_service_argo_weights(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    alb = canary_strategy(synthesis)["trafficRouting"]["alb"]
    record = ingress(synthesis)
    assert alb["ingress"] == record.get("metadata", "name")
    root = service(synthesis, alb["rootService"])
    (path,) = record.get("spec", "rules", 0, "http", "paths")
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"] == {"service": {"name": alb["rootService"], "port": {"name": USE_ANNOTATION}}}
    # ...the Service declared (its name flows from it), whose port is the one Argo's action uses.
    assert root.urn in record.property_dependencies["spec"]
    assert alb["servicePort"] in {port["port"] for port in root.get("spec", "ports")}


@pytest.mark.parametrize("variant", canary_variants())
def test_ping_pong_and_root_services_select_exactly_the_rollouts_pods_on_its_port(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    strategy = canary_strategy(synthesis)
    spec = rollout(synthesis).inputs["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selector_matches(spec["selector"], pod_labels)
    (container,) = spec["template"]["spec"]["containers"]
    container_ports = {port["name"] for port in container["ports"]}
    names = [strategy["pingPong"]["pingService"], strategy["pingPong"]["pongService"],
             strategy["trafficRouting"]["alb"]["rootService"]]
    for name in names:
        selector = service(synthesis, name).inputs["spec"]["selector"]
        assert selector == spec["selector"]["matchLabels"], name
        assert selector.items() <= pod_labels.items(), name
        (port,) = service(synthesis, name).inputs["spec"]["ports"]
        assert port["targetPort"] in container_ports and port["port"] == strategy["trafficRouting"]["alb"][
            "servicePort"], name


@pytest.mark.parametrize("variant", canary_variants())
def test_the_analysis_templates_the_rollout_names_exist_with_the_args_it_passes(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    declared = templates(synthesis)
    used = set()
    for analysis in analysis_refs(canary_strategy(synthesis)):
        passed = {arg["name"] for arg in analysis["args"]}
        for ref in analysis["templates"]:
            used.add(ref["templateName"])
            template_args = declared[ref["templateName"]].inputs["spec"]["args"]
            # Every argument the template needs (none has a default), and no other.
            assert {arg["name"] for arg in template_args} == passed, ref["templateName"]
            assert all("value" not in arg for arg in template_args)
            queries = " ".join(m["provider"]["prometheus"]["query"] for m in declared[ref["templateName"]].inputs[
                "spec"]["metrics"])
            assert set(re.findall(r"\{\{args\.([\w-]+)\}\}", queries)) == passed, ref["templateName"]
    assert used == set(declared), "every template is run"


def test_a_renamed_template_is_caught() -> None:
    synthesis = synthesized("dev")
    canary_strategy(synthesis)["analysis"]["templates"][0]["templateName"] = "model-server-health"
    with pytest.raises(KeyError):
        for analysis in analysis_refs(canary_strategy(synthesis)):
            for ref in analysis["templates"]:
                templates(synthesis)[ref["templateName"]]


# -- 4. Pulumi and Argo never fight over a field -------------------------------------------------------

ARGO_WRITES = re.compile(r"^(alb\.ingress\.kubernetes\.io/actions\..+|rollouts\.argoproj\.io/managed-alb-actions)$")


@pytest.mark.parametrize("variant", canary_variants())
def test_nothing_declares_a_field_argo_writes(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    for record in declared_objects(synthesis):
        annotations = record.get("metadata", "annotations") or {}
        assert not [key for key in annotations if ARGO_WRITES.match(key)], record.name
        assert "rollouts-pod-template-hash" not in keys_anywhere(record.inputs), record.name
    # Argo adds the revision's hash to the ping and pong Services' selectors: Pulumi sets them once.
    for name in ("model-server-ping", "model-server-pong"):
        assert service(synthesis, name).options["ignoreChanges"] == ["spec.selector"]
    # Nor does Pulumi own the root Service's selector for anyone else: Argo leaves that one alone.
    assert service(synthesis, "model-server").options["ignoreChanges"] == []
    # After `make rollback` another field manager owns the template: the fix takes it back.
    assert rollout(synthesis).inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}


def test_the_field_check_catches_an_actions_annotation() -> None:
    annotations = ingress(synthesized("dev")).get("metadata", "annotations")
    annotations["alb.ingress.kubernetes.io/actions.model-server"] = "{}"
    assert [key for key in annotations if ARGO_WRITES.match(key)]


def changes(before: Synthesis, after: Synthesis) -> dict[str, list[str]]:
    """Resource name → the properties that change."""
    return {change.key.rsplit("::", 1)[-1]: [path for path, _, _ in change.changes]
            for change in diff(before, after, "before", "after").changed}


def test_a_new_model_version_changes_only_the_pod_template_and_the_release_wait() -> None:
    before = synthesized("dev")
    after = synthesized_with("dev", {"modelService": {**stack_model("dev"), "version": "2"}})
    assert changes(before, after) == {
        "model-rollout": ["inputs.spec.template.spec.containers[0].env[1].value"],  # MODEL_VERSION
        "model-release": ["inputs.triggers"],
    }


def test_a_new_image_changes_only_the_image_the_pod_template_and_the_release_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """app/ changed: a new content tag (a new image, pushed) and a new model digest."""
    before = synthesized("dev")
    another = ModelArtifact(file="model.pkl", sha256=hashlib.sha256(b"another model").hexdigest(), format="pickle")
    monkeypatch.setattr(StackSettings, "model_artifact", property(lambda settings: another))
    monkeypatch.setattr("infra.workload.image.content_tag", lambda *args, **kwargs: "app-" + "1" * 20)
    after = synthesize("dev")
    assert changes(before, after) == {
        "image-model-server": ["inputs.build.args.VERSION", "inputs.imageName"],
        "model-rollout": ["inputs.spec.template.spec.containers[0].env[2].value",  # MODEL_SHA256
                          "inputs.spec.template.spec.containers[0].image"],
        "model-release": ["inputs.triggers"],
    }


# -- 5. `pulumi up` waits for the release, and fails when it fails -----------------------------------

def test_pulumi_up_waits_for_the_release_of_each_stack(stack_synthesis: Synthesis) -> None:
    command = release_command(stack_synthesis)
    minutes = RELEASE_TIMEOUT_MINUTES[stack_synthesis.stack]
    target = rollout(stack_synthesis).inputs["metadata"]
    assert command.inputs["create"] == (f".venv/bin/python -m delivery.release_wait --namespace {target['namespace']}"
                                        f" --rollout {target['name']} --timeout-s {minutes * 60}")
    assert set(command.inputs) == {"create", "environment", "triggers"}  # no update or delete command
    # The kubeconfig, a secret, from the cluster itself (never ambient ~/.kube/config).
    assert command.inputs["environment"] == {"KUBECONFIG_JSON": SECRET}
    cluster = stack_synthesis.one("aws:eks/cluster:Cluster")
    assert command.property_dependencies["environment"] == [cluster.urn]
    # A new pod template, a new digest, a new wait (the provider replaces the command on a new trigger).
    (digest,) = command.inputs["triggers"]
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert "triggers[*]" in command.options["replaceOnChanges"]
    dependencies = set(command.options["dependencies"])
    for kind in ("Rollout", "Ingress", "ScaledObject"):
        assert one(stack_synthesis, kind).urn in dependencies, kind


def test_the_release_wait_runs_in_the_projects_virtualenv_and_reads_the_variable_it_is_given() -> None:
    """The command as Pulumi runs it (from the project directory): its flags parse, and without
    the kubeconfig it names the variable the Command sets."""
    command = release_command(synthesized("dev"))
    argv = shlex.split(command.inputs["create"])
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert argv[0] == f"{project['runtime']['options']['virtualenv']}/bin/python"
    environment = {key: value for key, value in os.environ.items() if key != "KUBECONFIG_JSON"}
    result = subprocess.run(argv, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (variable,) = command.inputs["environment"]
    assert result.stderr.startswith(f"release_wait: {variable} is not set")


def test_the_release_wait_trigger_follows_the_pod_template_and_nothing_else() -> None:
    def trigger(synthesis: Synthesis) -> str:
        (digest,) = release_command(synthesis).inputs["triggers"]
        return str(digest)

    dev = synthesized("dev")
    model = stack_model("dev")
    assert trigger(synthesized_with("dev", {"modelService": {**model, "version": "2"}})) != trigger(dev)
    assert trigger(synthesized_with("dev", {"modelService": {**model, "memoryLimit": "2Gi"}})) != trigger(dev)
    # Scaling and the canary's own settings are not the pods': no new release to wait for.
    assert trigger(synthesized_with("dev", {"modelService": {**model, "maxReplicas": 3}})) == trigger(dev)
    assert trigger(with_canary("dev", minRequests=50)) == trigger(dev)


# -- 6. migration from a deployed Deployment, in an order that cannot deadlock -------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_migration_step_1_keeps_the_deployment_serving_beside_the_rollout(stack: str) -> None:
    synthesis = migrating(stack)
    deployment, autoscaler = synthesis.one(DEPLOYMENT), synthesis.one(AUTOSCALER)
    assert autoscaler.inputs["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                           "name": deployment.get("metadata", "name")}
    spec = rollout(synthesis).inputs["spec"]
    assert spec["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": deployment.get("metadata", "name"), "scaleDown": "never"}
    assert "template" not in spec
    # Argo refuses a Rollout no Ingress rule sends to use-annotation: an exact path nobody calls does,
    # before "/", which still reaches the Deployment's pods through the Service's own port.
    alb = spec["strategy"]["canary"]["trafficRouting"]["alb"]
    exact, prefix = ingress(synthesis).get("spec", "rules", 0, "http", "paths")
    assert exact == {"path": "/.well-known/model-serving/rollout", "pathType": "Exact", "backend": {
        "service": {"name": alb["rootService"], "port": {"name": USE_ANNOTATION}}}}
    assert prefix == {"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": alb["rootService"], "port": {"name": "http"}}}}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_migration_step_1_keeps_the_deployment_and_autoscaler_the_previous_program_declared(stack: str) -> None:
    before, after = before_canaries(stack), migrating(stack)
    assert without_artifact(after.one(DEPLOYMENT).inputs["spec"]) == without_artifact(
        before.one(DEPLOYMENT).inputs["spec"])
    assert after.one(AUTOSCALER).inputs == before.one(AUTOSCALER).inputs


@pytest.mark.parametrize("stack", ["dev"])
def test_migration_step_1_gives_the_deployment_and_the_rollout_their_own_autoscalers(stack: str) -> None:
    synthesis = migrating(stack)
    deployments_hpa = synthesis.one(AUTOSCALER).get("metadata", "name")
    kedas_hpa = one(synthesis, "ScaledObject").get("spec", "advanced", "horizontalPodAutoscalerConfig", "name")
    assert kedas_hpa != deployments_hpa


def migration_variants() -> list[tuple[str, dict[str, Any]]]:
    """Every canary variant, and each stack in migration step 1."""
    return [*((variant, {}) for variant in canary_variants()),
            *((stack, model_overrides(stack, adoptDeployment=True)) for stack in STACKS)]


@pytest.mark.parametrize(("stack", "overrides"), migration_variants(),
                         ids=[*canary_variants(), *(f"{stack}-adopting" for stack in STACKS)])
def test_the_rollout_never_waits_for_the_ingress_and_the_release_wait_comes_last(
        stack: str, overrides: dict[str, Any]) -> None:
    """Pulumi waits for the Ingress's load balancer, which the ALB controller builds only once Argo has
    written its action, which Argo writes only once the Rollout exists: a Rollout that waited for the
    Ingress would deadlock the first `pulumi up`."""
    synthesis = synthesized_with(stack, overrides) if overrides else synthesized_variant(stack)
    record = rollout(synthesis)
    before_rollout = waits_for(synthesis, record)
    assert ingress(synthesis).urn not in before_rollout
    for name in ("model-server-ping", "model-server-pong", "model-server"):
        assert service(synthesis, name).urn in before_rollout, name
    assert {t.urn for t in templates(synthesis).values()} <= before_rollout
    before_release = waits_for(synthesis, release_command(synthesis))
    assert {record.urn, ingress(synthesis).urn, one(synthesis, "ScaledObject").urn} <= before_release


def test_the_deadlock_check_catches_a_rollout_that_waits_for_the_ingress() -> None:
    synthesis = synthesized("dev")
    record = rollout(synthesis)
    record.options["dependencies"].append(ingress(synthesis).urn)
    assert ingress(synthesis).urn in waits_for(synthesis, record)


@pytest.mark.parametrize("stack", STACKS)
def test_the_final_step_leaves_neither_deployment_nor_its_autoscaler(stack: str) -> None:
    """After step 1, setting adoptDeployment back to false declares neither the Deployment nor its
    HPA. Pulumi deletes resources the program no longer declares after every create and update of
    the same `pulumi up`, so the Rollout has its template and the Ingress's "/" path goes to Argo's
    action before the Deployment's pods go."""
    step_1, final = migrating(stack), synthesized(stack)
    before, after = ({r.urn: r for r in s.resources if r.custom} for s in (step_1, final))
    assert {(before[urn].type, before[urn].name) for urn in before.keys() - after.keys()} == {
        (DEPLOYMENT, "model-deployment"), (AUTOSCALER, "model-autoscaler")}
    assert not after.keys() - before.keys()
    changed = {after[urn].name for urn in after.keys() & before.keys() if after[urn].inputs != before[urn].inputs}
    assert {"model-rollout", "model-ingress"} <= changed <= {"model-rollout", "model-ingress", "model-scaler"}
    assert "workloadRef" not in rollout(final).inputs["spec"] and "template" in rollout(final).inputs["spec"]


# -- 7. settings: each new key named, with a fix ------------------------------------------------------------

DEV_MODEL = stack_model("dev")
PROD_MODEL = stack_model("prod")


@pytest.mark.parametrize(("stack", "overrides", "expected"), [
    # each step a larger share than the one before
    ("dev", {"modelService": {**DEV_MODEL, "canary": {"steps": [
        {"weight": 30, "pauseSeconds": 60}, {"weight": 30, "pauseSeconds": 60}, {"weight": 20, "pauseSeconds": 0}]}}}, {
        f"modelService.canary.steps[{index}].weight": f"weight {weight} is not above the previous step's 30 / give "
                                                      "each step a larger share than the one before, e.g. pulumi "
                                                      "config set --path "
                                                      f"'modelService.canary.steps[{index}].weight' 31"
        for index, weight in ((1, 30), (2, 20))}),
    # `pulumi up` would give up before the steps could end
    ("dev", {"modelService": {**DEV_MODEL, "canary": {"steps": [
        {"weight": 10, "pauseSeconds": 30}, {"weight": 50, "pauseSeconds": 60}], "releaseTimeoutMinutes": 6}}}, {
        "modelService.canary.releaseTimeoutMinutes": "6 minutes is less than the steps' 1.5 minutes of pauses plus 5 "
                                                     "for the pods to start / pulumi config set --path "
                                                     "'modelService.canary.releaseTimeoutMinutes' 7"}),
    # nothing to judge a canary with
    ("dev", {"observability": {"enabled": False}}, {
        "modelService.canary.enabled": "canary releases are judged by the in-cluster Prometheus, which "
                                       "observability.enabled: false leaves out / pulumi config set --path "
                                       "'modelService.canary.enabled' false, or turn observability back on"}),
    # one pod in prod
    ("prod", {"modelService": {**PROD_MODEL, "replicas": 1, "minReplicas": 1}}, {
        "modelService.minReplicas": "1 pod in prod: a node drain or a crash takes the endpoint down / pulumi config "
                                    "set --path 'modelService.minReplicas' 2"}),
    # misspelled keys inside canary and inside a step
    ("dev", {"modelService": {**DEV_MODEL, "canary": {"stepz": [], "minRequest": 3}}}, {
        "modelService.canary.stepz": "is not a known setting here / did you mean 'steps'? remove it: pulumi config rm "
                                     "--path 'modelService.canary.stepz'",
        "modelService.canary.minRequest": "is not a known setting here / did you mean 'minRequests'? remove it: "
                                          "pulumi config rm --path 'modelService.canary.minRequest'"}),
    ("dev", {"modelService": {**DEV_MODEL, "canary": {"steps": [{"weight": 10, "pauseSecond": 60}]}}}, {
        "modelService.canary.steps[0].pauseSeconds": "is required / pulumi config set --path "
                                                     "'modelService.canary.steps[0].pauseSeconds' <value>",
        "modelService.canary.steps[0].pauseSecond": "is not a known setting here / did you mean 'pauseSeconds'? "
                                                    "remove it: pulumi config rm --path "
                                                    "'modelService.canary.steps[0].pauseSecond'"}),
    # weights a canary can have: some traffic, never all of it before the checks
    *[("dev", {"modelService": {**DEV_MODEL, "canary": {"steps": [{"weight": weight, "pauseSeconds": 60}]}}}, {
        "modelService.canary.steps[0].weight": f"Input should be {bound} (got {weight}) / pulumi config set --path "
                                               "'modelService.canary.steps[0].weight' <valid value>"})
      for weight, bound in ((100, "less than or equal to 99"), (0, "greater than or equal to 1"))],
    ("dev", {"modelService": {**DEV_MODEL, "targetInflightPerPod": 0}}, {
        "modelService.targetInflightPerPod": "Input should be greater than or equal to 1 (got 0) / pulumi config set "
                                             "--path 'modelService.targetInflightPerPod' <valid value>"}),
])
def test_each_release_setting_problem_reads_exactly(stack: str, overrides: dict[str, Any],
                                                    expected: dict[str, str]) -> None:
    assert problems(stack, **overrides) == expected


def test_a_release_timeout_of_exactly_the_pauses_plus_five_minutes_is_accepted() -> None:
    raw, _ = stack_config("dev", model_overrides("dev", steps=[{"weight": 10, "pauseSeconds": 600},
                                                               {"weight": 50, "pauseSeconds": 600}],
                                                 releaseTimeoutMinutes=25))
    assert load_settings(raw, project="model-serving", stack="dev").model_service.canary.release_timeout_minutes == 25


def test_the_release_timeout_fix_names_the_smallest_timeout_accepted() -> None:
    found = problems("dev", **model_overrides("dev", steps=[{"weight": 10, "pauseSeconds": 600},
                                                            {"weight": 50, "pauseSeconds": 600}],
                                              releaseTimeoutMinutes=20))
    assert found["modelService.canary.releaseTimeoutMinutes"].endswith(
        "pulumi config set --path 'modelService.canary.releaseTimeoutMinutes' 25")


def test_without_observability_canaries_off_is_the_way_out() -> None:
    raw, _ = stack_config("dev", {"observability": {"enabled": False}, **model_overrides("dev", enabled=False)})
    assert load_settings(raw, project="model-serving", stack="dev").model_service.workload_kind == "Deployment"


# -- 8. the policy pack holds the Rollout to the workload rules -------------------------------------------

def rollout_resource(stack: str = "prod") -> Resource:
    record = rollout(synthesized(stack))
    return Resource(record.type, record.name, copy.deepcopy(record.inputs), record.options["protect"])


def violations(resource: Resource) -> dict[str, list[str]]:
    found = {rule.name: rule.violations(resource) for rule in RULES}
    return {name: messages for name, messages in found.items() if messages}


def model_container(resource: Resource) -> dict[str, Any]:
    (container,) = resource.props["spec"]["template"]["spec"]["containers"]
    return container


def test_the_committed_rollouts_pass_every_rule() -> None:
    for stack in STACKS:
        assert violations(rollout_resource(stack)) == {}


def test_a_privileged_rollout_or_one_without_requests_is_refused() -> None:
    privileged = rollout_resource()
    model_container(privileged)["securityContext"]["privileged"] = True
    assert violations(privileged)["no-unlisted-privileged-containers"] == [
        "container model-server of model-serving/model-server is privileged and not in PRIVILEGED_ALLOWED"]
    unrequested = rollout_resource()
    del model_container(unrequested)["resources"]["requests"]
    assert violations(unrequested)["containers-request-resources"] == [
        "container model-server: cpu and memory requests are required (without them the pod is BestEffort, "
        "evicted first)"]


def test_a_rollout_without_limits_or_with_a_tag_or_escalating_is_refused() -> None:
    broken = rollout_resource()
    container = model_container(broken)
    container["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    container["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/model-serving-prod/model-server:latest"
    container["securityContext"]["allowPrivilegeEscalation"] = True
    assert violations(broken).get("workload-restricted") == [
        "container model-server: allowPrivilegeEscalation must be false",
        "container model-server: cpu and memory limits are required",
        f"container model-server: the image must be pinned by digest (repository@sha256:...), got {container['image']}"]


# -- 9. `make plan` shows each stack's steps and thresholds -------------------------------------------------

PLAN_LINES = {
    "dev": ["steps=50% → wait 60s → check model-server-canary-traffic → 100%",
            "fails=error-ratio > 0.01 every 10s; p99-latency > 0.25 every 10s; refusal-increase > 0.05 every 10s",
            "fails=canary-requests < 20 every 10s"],
    "staging": ["steps=10% → wait 120s → 50% → wait 120s → check model-server-canary-traffic → 100%",
                "fails=error-ratio > 0.01 every 10s; p99-latency > 0.25 every 10s; refusal-increase > 0.05 every 10s",
                "fails=canary-requests < 100 every 10s"],
    "prod": ["steps=10% → wait 120s → 50% → wait 120s → check model-server-canary-traffic → 100%",
             "fails=error-ratio > 0.01 every 10s; p99-latency > 0.2 every 10s; refusal-increase > 0.05 every 10s",
             "fails=canary-requests < 100 every 10s"],
}


def test_the_plan_shows_each_stacks_canary_steps_and_thresholds(stack_synthesis: Synthesis) -> None:
    lines = show(stack_synthesis, "text").splitlines()
    rollout_line, health_line, traffic_line = PLAN_LINES[stack_synthesis.stack]
    (shown,) = [line for line in lines if line.split()[:2] == ["Rollout", "model-rollout"]]
    assert f"  {rollout_line}  image=" in shown
    (health,) = [line for line in lines if line.split()[:2] == ["AnalysisTemplate", "model-analysis-canary-health"]]
    assert health.endswith(f"  {health_line}")
    (traffic,) = [line for line in lines if line.split()[:2] == ["AnalysisTemplate", "model-analysis-canary-traffic"]]
    assert traffic.endswith(f"  {traffic_line}")


# -- 10. strict schemas: the custom resources against their CRDs, the pods against Kubernetes --------------

def crds(variant: str) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """The schemas of the CRDs the charts install (Argo's and KEDA's charts ship theirs as templates)."""
    from tests.support.charts import rendered_charts

    charts = rendered_charts(variant)
    return crd_schemas([*(crd for chart in charts for crd in chart.crds),
                        *(obj for chart in charts for obj in chart.of_kind("CustomResourceDefinition"))])


def schema_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """(id, chart variant, overrides): every canary variant, and each stack without canaries and migrating."""
    return [*((variant, variant, {}) for variant in canary_variants()),
            *((f"{stack}-no-canary", stack, model_overrides(stack, enabled=False)) for stack in STACKS),
            *((f"{stack}-adopting", stack, model_overrides(stack, adoptDeployment=True)) for stack in STACKS)]


@pytest.mark.parametrize(("label", "variant", "overrides"), schema_variants(),
                         ids=[label for label, _, _ in schema_variants()])
def test_the_workloads_objects_are_strictly_valid(label: str, variant: str, overrides: dict[str, Any]) -> None:
    synthesis = synthesized_with(variant, overrides) if overrides else synthesized_variant(variant)
    version = synthesis.one("aws:eks/cluster:Cluster").inputs["version"]
    custom = crds(variant)
    checked: set[str] = set()
    for record in declared_objects(synthesis):
        if record.get("metadata", "namespace") != NAMESPACE:
            continue
        obj = record.inputs
        if obj["apiVersion"].startswith(("argoproj.io/", "keda.sh/")):
            assert (obj["apiVersion"], obj["kind"]) in custom, obj["kind"]
        validate(obj, version, custom)  # a custom resource by its CRD, anything else by Kubernetes
        checked.add(obj["kind"])
        # The Rollout's pods, as Kubernetes will validate them in the ReplicaSets Argo makes.
        template = obj["spec"].get("template") if obj["kind"] == "Rollout" else None
        if template is not None:
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {
                "name": "model-server", "namespace": NAMESPACE}, "template": template}, version, strict=True)
    expected = {"ScaledObject", "Service", "Ingress", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount",
                "PersistentVolumeClaim", "PodMonitor"}
    if not label.endswith("-no-canary"):
        expected |= {"Rollout", "AnalysisTemplate"}
    if label.endswith(("-no-canary", "-adopting")):
        expected |= {"Deployment"}
    if label.endswith("-adopting"):
        expected |= {"HorizontalPodAutoscaler"}
    assert checked == expected


def test_the_crd_schemas_catch_a_misspelled_field() -> None:
    synthesis = synthesized("dev")
    custom = crds("dev")
    broken = copy.deepcopy(rollout(synthesis).inputs)
    broken["spec"]["strategy"]["canary"]["trafficRouting"]["alb"]["servicePorts"] = 80
    with pytest.raises(jsonschema.ValidationError, match="servicePorts"):
        validate(broken, "1.35", custom)
    template = copy.deepcopy(templates(synthesis)["model-server-canary-traffic"].inputs)
    template["spec"]["metrics"][0]["failureConditon"] = "true"
    with pytest.raises(jsonschema.ValidationError, match="failureConditon"):
        validate(template, "1.35", custom)
