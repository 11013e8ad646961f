"""Traffic-driven scaling: the KEDA ScaledObject that owns the model workload's replica count, and the
KEDA chart that acts on it, cross-checked against the Rollout (or Deployment) it scales, the
Prometheus it asks and the RBAC KEDA needs for it. Queries are run by promtool on made-up series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import PROJECT_DIR
from review.records import ResourceRecord, Synthesis
from tests.support.charts import rendered_chart
from tests.support.graph import waits_for
from tests.support.prometheus import promtool, write_rules
from tests.support.scheduling import selector_matches
from tests.support.stacks import STACKS, synthesized, synthesized_with

NAMESPACE = "model-serving"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
# minReplicas..maxReplicas of each committed stack, and the count KEDA holds when blind (halfway, up).
BOUNDS = {"dev": (1, 2, 2), "staging": (2, 4, 3), "prod": (3, 12, 8)}
SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 30},
                         {"type": "Pods", "value": 2, "periodSeconds": 30}]}
SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
              "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}


def stack_model(stack: str) -> dict[str, Any]:
    config = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    return dict(config.get("model-serving:modelService") or {})


def without_canaries(stack: str, **observability: Any) -> Synthesis:
    model = stack_model(stack)
    overrides: dict[str, Any] = {"modelService": {**model, "canary": {**model.get("canary", {}), "enabled": False}}}
    if observability:
        overrides["observability"] = observability
    return synthesized_with(stack, overrides)


def scaled_object(synthesis: Synthesis) -> ResourceRecord:
    return synthesis.object("ScaledObject", "model-server", namespace=NAMESPACE)


def triggers(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    return {trigger["name"]: trigger for trigger in scaled_object(synthesis).inputs["spec"]["triggers"]}


# -- what KEDA scales, between which bounds, how fast -------------------------------------------------------

def test_keda_scales_the_rollout_between_the_stacks_bounds(stack_synthesis: Synthesis) -> None:
    record = scaled_object(stack_synthesis)
    spec = record.inputs["spec"]
    target = stack_synthesis.object("Rollout", spec["scaleTargetRef"]["name"], namespace=NAMESPACE)
    assert spec["scaleTargetRef"] == {"apiVersion": target.inputs["apiVersion"], "kind": "Rollout",
                                      "name": target.get("metadata", "name")}
    assert target.inputs["apiVersion"] == "argoproj.io/v1alpha1"
    low, high, blind = BOUNDS[stack_synthesis.stack]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"]) == (low, high, 15)
    # Up fast (double every 30 s, at least two pods), down slowly (five minutes of stabilisation).
    # Its own HPA name: the Deployment's HPA keeps "model-server" while a stack migrates (step 1).
    assert spec["advanced"] == {"horizontalPodAutoscalerConfig": {
        "name": "model-server-rollout", "behavior": {"scaleUp": SCALE_UP, "scaleDown": SCALE_DOWN}}}
    # Blind (Prometheus not answering three times), it holds halfway to the maximum, or more if it runs more.
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": blind, "behavior": "currentReplicasIfHigher"}
    # A Rollout was never scaled by a plain HPA: nothing to take over.
    assert "annotations" not in record.inputs["metadata"]


def test_the_triggers_are_traffic_then_cpu_as_a_floor(stack_synthesis: Synthesis) -> None:
    found = triggers(stack_synthesis)
    assert list(found) == ["inflight-requests", "queue-wait", "cpu"]
    for name in ("inflight-requests", "queue-wait"):
        trigger = found[name]
        assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue"), name
        # An empty answer is an error (and the fallback), never a silent 0.
        assert trigger["metadata"]["ignoreNullValues"] == "false", name
        assert trigger["metadata"]["serverAddress"] == "http://monitoring-prometheus.monitoring.svc:9090"
    assert found["inflight-requests"]["metadata"]["threshold"] == "16"
    assert found["queue-wait"]["metadata"]["threshold"] == "1"
    # The queue-wait objective (50 ms in every stack, the default) in seconds, times the replicas asked for.
    assert " / 0.05 * on() max(rollout_info_replicas_desired" in found["queue-wait"]["metadata"]["query"]
    assert found["cpu"] == {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    # KEDA's webhook accepts a fallback only beside an AverageValue trigger that is not CPU or memory.
    assert any(t["metricType"] == "AverageValue" and t["type"] not in ("cpu", "memory") for t in found.values())


def test_targets_and_bounds_come_from_config() -> None:
    model = stack_model("dev")
    synthesis = synthesized_with("dev", {
        "modelService": {**model, "minReplicas": 2, "maxReplicas": 9, "replicas": 2, "targetInflightPerPod": 24,
                         "targetCpuUtilization": 60},
        "observability": {"queueWaitSloMs": 80}})
    spec = scaled_object(synthesis).inputs["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["fallback"]["replicas"]) == (2, 9, 6)
    found = triggers(synthesis)
    assert found["inflight-requests"]["metadata"]["threshold"] == "24"
    assert " / 0.08 * on() " in found["queue-wait"]["metadata"]["query"]
    assert found["cpu"]["metadata"] == {"value": "60"}


def test_keda_asks_the_prometheus_the_metrics_chart_runs() -> None:
    address = triggers(synthesized("prod"))["inflight-requests"]["metadata"]["serverAddress"]
    host, port = address.removeprefix("http://").split(":")
    name, namespace, _ = host.split(".")
    service = rendered_chart("prod", "kube-prometheus-stack").one("Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


# -- canaries off, observability off ---------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_without_canaries_keda_scales_the_deployment_on_its_own_replica_series(stack: str) -> None:
    synthesis = without_canaries(stack)
    spec = scaled_object(synthesis).inputs["spec"]
    deployment = synthesis.object("Deployment", spec["scaleTargetRef"]["name"], namespace=NAMESPACE)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment.get("metadata", "name")}
    query = triggers(synthesis)["queue-wait"]["metadata"]["query"]
    assert 'max(kube_deployment_spec_replicas{namespace="model-serving",deployment="model-server"})' in query
    assert "rollout_info" not in query


def test_without_canaries_the_scaled_object_waits_for_the_deployment_it_scales() -> None:
    synthesis = without_canaries("dev")
    deployment = synthesis.one("kubernetes:apps/v1:Deployment")
    assert deployment.urn in waits_for(synthesis, scaled_object(synthesis))


def test_without_observability_cpu_alone_scales_and_nothing_falls_back() -> None:
    synthesis = without_canaries("dev", enabled=False)
    spec = scaled_object(synthesis).inputs["spec"]
    assert spec["triggers"] == [{"type": "cpu", "name": "cpu", "metricType": "Utilization",
                                 "metadata": {"value": "70"}}]
    assert "fallback" not in spec  # KEDA refuses a fallback with CPU triggers only


# -- the queries, run: a number when idle, the replicas a busy workload needs --------------------------------

def expression_tests(cases: list[tuple[list[dict[str, str]], str, float]]) -> dict[str, Any]:
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series,
         "promql_expr_test": [{"expr": expr, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": value}]}]}
        for series, expr, value in cases]}


def gauge(name: str, labels: str, value: float) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"{value:g}x15"}


def buckets(per_bucket: dict[str, float]) -> list[dict[str, str]]:
    return [{"series": f'model_server_queue_wait_seconds_bucket{{namespace="model-serving",pod="a",le="{le}"}}',
             "values": f"0+{rate:g}x15"} for le, rate in per_bucket.items()]


@pytest.mark.parametrize("workload_kind", ["Rollout", "Deployment"])
def test_the_triggers_answer_zero_when_idle_and_what_busy_pods_need(workload_kind: str, tmp_path: Path) -> None:
    """With ignoreNullValues false an empty answer is an error: an idle model must answer 0, not
    nothing. Busy, the queue-wait trigger asks for replicas x p99 / objective (AverageValue, target 1)."""
    synthesis = synthesized("dev") if workload_kind == "Rollout" else without_canaries("dev")
    found = triggers(synthesis)
    inflight, queue_wait = found["inflight-requests"]["metadata"]["query"], found["queue-wait"]["metadata"]["query"]
    desired = (gauge("rollout_info_replicas_desired", 'namespace="model-serving",name="model-server"', 3)
               if workload_kind == "Rollout" else
               gauge("kube_deployment_spec_replicas", 'namespace="model-serving",deployment="model-server"', 3))
    pods = [gauge("model_server_inflight_requests", 'namespace="model-serving",pod="a"', 10),
            gauge("model_server_inflight_requests", 'namespace="model-serving",pod="b"', 30)]
    # p99 of a wait between 50 and 100 ms (dev's objective is 50 ms): 0.0995 s, with 3 replicas asked for.
    slow = buckets({"0.05": 0, "0.1": 100, "+Inf": 100})
    cases = [([desired], inflight, 0), ([desired], queue_wait, 0), ([desired, *pods], inflight, 40),
             ([desired, *slow], queue_wait, 0.0995 / 0.05 * 3)]
    write_rules([], tmp_path / "rules.yaml")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(expression_tests(cases), sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- what KEDA itself may do, and who watches it -------------------------------------------------------------

def keda_rules() -> list[dict[str, Any]]:
    chart = rendered_chart("prod", "keda")
    return [rule for kind in ("ClusterRole", "Role") for role in chart.of_kind(kind) for rule in role.get("rules", [])]


def test_kedas_rbac_grants_nothing_on_every_resource() -> None:
    """The chart's default grants get on every resource of every API group, Secrets included."""
    for rule in keda_rules():
        assert "*" not in rule.get("apiGroups", []) and not any(
            resource == "*" or resource.startswith("*/") for resource in rule.get("resources", [])), rule


def scale_grants() -> set[tuple[str, str]]:
    return {(group, resource) for rule in keda_rules() if "get" in rule["verbs"]
            for group in rule["apiGroups"] for resource in rule["resources"] if resource.endswith("/scale")}


def test_keda_may_scale_deployments_statefulsets_and_the_rollout_only() -> None:
    assert scale_grants() == {("apps", "deployments/scale"), ("apps", "statefulsets/scale"),
                              ("argoproj.io", "rollouts/scale")}
    assert {("argoproj.io", resource) for rule in keda_rules() if "argoproj.io" in rule["apiGroups"]
            for resource in rule["resources"]} == {("argoproj.io", "rollouts/scale"), ("argoproj.io", "rollouts")}


def test_the_keda_monitor_selects_the_operators_service_on_a_port_it_has() -> None:
    monitor = synthesized("prod").object("ServiceMonitor", "keda-operator").inputs
    chart = rendered_chart("prod", "keda")
    services = [s for s in chart.of_kind("Service") if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
                and selector_matches(monitor["spec"]["selector"], s["metadata"].get("labels") or {})]
    assert [s["metadata"]["name"] for s in services] == ["keda-operator"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in services[0]["spec"]["ports"]}
    # KEDA's series carry the ScaledObject's namespace, which must win over the target's (kube-system).
    assert endpoint["honorLabels"] is True
    (operator,) = [d for d in chart.of_kind("Deployment") if selector_matches(
        {"matchLabels": services[0]["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])]
    assert "--enable-prometheus-metrics=true" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    prometheus = rendered_chart("prod", "kube-prometheus-stack").one("Prometheus")["spec"]
    assert prometheus["serviceMonitorSelector"] == {} and prometheus["serviceMonitorNamespaceSelector"] == {}


def test_the_scaled_object_waits_for_keda_and_the_rollout(stack_synthesis: Synthesis) -> None:
    """KEDA's CRD and webhook must exist first, and the Rollout it scales (KEDA reads its scale
    subresource)."""
    before = waits_for(stack_synthesis, scaled_object(stack_synthesis))
    keda = rendered_chart(stack_synthesis.stack, "keda").record
    assert keda.urn in before
    assert stack_synthesis.object("Rollout", "model-server", namespace=NAMESPACE).urn in before
