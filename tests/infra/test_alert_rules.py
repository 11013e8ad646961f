"""The alert rules proved with Prometheus's own tools: promtool checks every stack's rules and
unit-tests each alert (it fires on the series that should trigger it and stays quiet on healthy
ones); the metric names and labels they use exist in the real server's /metrics; and a real
Prometheus scraping a real, faulty server sees the alert expressions turn true.
Past 400 lines, on purpose: each alert's promtool case and its expected labels sit in one table
beside the real-Prometheus run that uses the same rules."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infra.observability.alert_rules import (
    RUNBOOK,
    model_alerts,
    platform_alerts,
    release_alerts,
    rule_groups,
    scaling_alerts,
    workload_alerts,
)
from infra.observability.dashboard import RATE, panels
from review.records import Synthesis
from tests.support.prometheus import Prometheus, check_expressions, promtool, write_rules
from tests.support.server import Server, start_server, write_model
from tests.support.stacks import synthesized

DEV_LATENCY_SLO_S, DEV_QUEUE_SLO_S = 0.25, 0.05
# What runs the model's pods: an Argo Rollout (canary releases, the committed stacks) or a Deployment.
WORKLOAD_KINDS = ("Rollout", "Deployment")
# Labels a PodMonitor's target carries besides the server's own (the operator adds them).
TARGET_LABELS = {"namespace", "pod", "container", "job", "instance", "service"}
MODEL = 'namespace="model-serving"'


def declared_groups(synthesis: Synthesis) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = synthesis.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule").inputs[
        "spec"]["groups"]
    return groups


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_promtool_accepts_every_stacks_rules(stack: str, tmp_path: Path) -> None:
    groups = declared_groups(synthesized(stack))
    result = promtool("check", "rules", str(write_rules(groups, tmp_path / "r.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(group['rules']) for group in groups)} rules found" in result.stdout


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    broken = [{"name": "g", "rules": [{"alert": "Broken", "expr": "sum(rate(x[5m])"}]}]
    assert promtool("check", "rules", str(write_rules(broken, tmp_path / "r.yaml"))).returncode != 0


# -- unit tests of each alert: firing and quiet series --------------------------------------------------

def counter(name: str, labels: str, per_minute: float) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"0+{per_minute:g}x30"}


def histogram(name: str, labels: str, per_bucket: Mapping[str, float]) -> list[dict[str, str]]:
    return [counter(f"{name}_bucket", f'{labels},le="{le}"', rate) for le, rate in per_bucket.items()]


def gauge(name: str, labels: str, value: float) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": f"{value:g}x30"}


REQUESTS = "model_server_requests_total"
INFER = f'{MODEL},endpoint="infer"'
FAST = {"0.1": 100, "0.25": 100, "0.5": 100, "+Inf": 100}
SLOW = {"0.1": 0, "0.25": 0, "0.5": 100, "+Inf": 100}
# alert → (series that should fire it, healthy series, labels it fires with)
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]]] = {
    "ModelEndpointErrorRatioHigh": (
        [counter(REQUESTS, f'{INFER},status="200"', 100), counter(REQUESTS, f'{INFER},status="500"', 5)],
        [counter(REQUESTS, f'{INFER},status="200"', 100), counter(REQUESTS, f'{INFER},status="400"', 50)], {}),
    "ModelEndpointLatencyHigh": (histogram("model_server_request_duration_seconds", INFER, SLOW),
                                 histogram("model_server_request_duration_seconds", INFER, FAST), {}),
    "ModelQueueWaitHigh": (histogram("model_server_queue_wait_seconds", MODEL, SLOW),
                           histogram("model_server_queue_wait_seconds", MODEL,
                                     {"0.025": 100, "0.05": 100, "0.1": 100, "+Inf": 100}), {}),
    "ModelEndpointSaturated": ([gauge("model_server_inflight_requests", f'{MODEL},pod="a"', 80)],
                               [gauge("model_server_inflight_requests", f'{MODEL},pod="a"', 10)], {}),
    # The Deployment's replicas come from kube-state-metrics (the Rollout's below, NO_READY_REPLICAS).
    "ModelNoReadyReplicas": (
        [gauge("kube_deployment_status_replicas_available", f'{MODEL},deployment="model-server"', 0)],
        [gauge("kube_deployment_status_replicas_available", f'{MODEL},deployment="model-server"', 2)],
        {"namespace": "model-serving", "deployment": "model-server"}),
    "ModelPodCrashLooping": (
        [gauge("kube_pod_container_status_waiting_reason", f'{MODEL},pod="p",container="c",reason="CrashLoopBackOff"',
               1)],
        [gauge("kube_pod_container_status_waiting_reason", f'{MODEL},pod="p",container="c",reason="CrashLoopBackOff"',
               0)],
        {"namespace": "model-serving", "pod": "p", "container": "c", "reason": "CrashLoopBackOff"}),
    "ModelPodOOMKilled": (
        [gauge("kube_pod_container_status_last_terminated_reason", f'{MODEL},pod="p",container="c",reason="OOMKilled"',
               1), {"series": f'kube_pod_container_status_restarts_total{{{MODEL},pod="p",container="c"}}',
                    "values": "0x20 1x10"}],
        [gauge("kube_pod_container_status_last_terminated_reason", f'{MODEL},pod="p",container="c",reason="OOMKilled"',
               1), gauge("kube_pod_container_status_restarts_total", f'{MODEL},pod="p",container="c"', 1)],
        {"namespace": "model-serving", "pod": "p", "container": "c", "reason": "OOMKilled"}),
    "ModelAutoscalerAtMaximum": (
        [gauge("kube_horizontalpodautoscaler_status_current_replicas", f'{MODEL},horizontalpodautoscaler="h"', 6),
         gauge("kube_horizontalpodautoscaler_spec_max_replicas", f'{MODEL},horizontalpodautoscaler="h"', 6)],
        [gauge("kube_horizontalpodautoscaler_status_current_replicas", f'{MODEL},horizontalpodautoscaler="h"', 4),
         gauge("kube_horizontalpodautoscaler_spec_max_replicas", f'{MODEL},horizontalpodautoscaler="h"', 6)],
        {"namespace": "model-serving", "horizontalpodautoscaler": "h"}),
    "GpuPodPendingTooLong": (
        [gauge("kube_pod_status_phase", 'namespace="model-serving",pod="g",phase="Pending"', 1),
         gauge("kube_pod_container_resource_requests", 'namespace="model-serving",pod="g",resource="nvidia_com_gpu"',
               1)],
        [gauge("kube_pod_status_phase", 'namespace="model-serving",pod="c",phase="Pending"', 1),
         gauge("kube_pod_container_resource_requests", 'namespace="model-serving",pod="c",resource="cpu"', 1)],
        {"namespace": "model-serving", "pod": "g"}),
    "NodeNotReady": ([gauge("kube_node_status_condition", 'node="n",condition="Ready",status="true"', 0)],
                     [gauge("kube_node_status_condition", 'node="n",condition="Ready",status="true"', 1)],
                     {"node": "n", "condition": "Ready", "status": "true"}),
    "ClusterAutoscalerErrors": ([counter("cluster_autoscaler_errors_total", 'type="cloudProviderError"', 1)],
                                [gauge("cluster_autoscaler_errors_total", 'type="cloudProviderError"', 3)], {}),
    # AccessDenied on launch fires; the errors Karpenter handles itself (an instance already gone, no spot
    # capacity before it falls back) stay quiet however many.
    "KarpenterCloudProviderErrors": (
        [counter("karpenter_cloudprovider_errors_total",
                 'controller="nodeclaim.lifecycle",method="Create",provider="aws",error="AccessDenied"', 1)],
        [counter("karpenter_cloudprovider_errors_total",
                 'controller="nodeclaim.lifecycle",method="Create",provider="aws",error="InsufficientCapacityError"',
                 5),
         counter("karpenter_cloudprovider_errors_total",
                 'controller="nodeclaim.termination",method="Get",provider="aws",error="NodeClaimNotFoundError"', 5)],
        {}),
    # KEDA's and Argo Rollouts' own series, with the namespace of the object they describe (honorLabels).
    "ModelScalerErrors": (
        [counter("keda_scaler_detail_errors_total",
                 f'{MODEL},scaledObject="model-server",scaler="prometheusScaler",triggerIndex="0"', 1)],
        [gauge("keda_scaler_detail_errors_total",
               f'{MODEL},scaledObject="model-server",scaler="prometheusScaler",triggerIndex="0"', 3)], {}),
    "ModelReleaseAborted": (
        [gauge("rollout_info", f'{MODEL},name="model-server",phase="Degraded",strategy="canary"', 1)],
        [gauge("rollout_info", f'{MODEL},name="model-server",phase="Healthy",strategy="canary"', 1),
         gauge("rollout_info", f'{MODEL},name="other",phase="Degraded",strategy="canary"', 1)], {}),
}
# The same alert for a Rollout: Argo Rollouts' series (kube-state-metrics has none for Rollouts).
NO_READY_REPLICAS = {
    "Rollout": (
        [gauge("rollout_info_replicas_available", f'{MODEL},name="model-server"', 0)],
        [gauge("rollout_info_replicas_available", f'{MODEL},name="model-server"', 2)],
        {"namespace": "model-serving", "name": "model-server"}),
    "Deployment": CASES["ModelNoReadyReplicas"],
}
# Only a Rollout has releases to abort.
KIND_ONLY = {"ModelReleaseAborted": "Rollout"}


# alert → (severity, summary, description as it fires on CASES' series), written out here rather than
# read from the rule under test, for dev's objectives (250 ms latency, 50 ms queue wait).
FIRES_WITH: dict[str, tuple[str, str, str]] = {
    "ModelEndpointErrorRatioHigh": (
        "critical", "The model endpoint answers more than 1% of requests with a server error",
        "Server errors are above 1% of requests over the last 5 minutes; see the Errors panel."),
    "ModelEndpointLatencyHigh": (
        "warning", "p99 inference latency is above the 250 ms objective",
        "Inference is slower than its objective for 10 minutes; see the Inference latency panel."),
    "ModelQueueWaitHigh": (
        "warning", "Requests wait more than 50 ms for their batch (p99)",
        "The pods are busier than their batching absorbs; see the Queue wait panel."),
    "ModelEndpointSaturated": (
        "warning", "A model pod holds more requests in flight than it can batch promptly",
        "Clients send faster than a pod answers; see Requests in flight per pod."),
    "ModelNoReadyReplicas": (
        "critical", "No model pod is ready: the endpoint answers nothing",
        "The {kind} has had no available replica for 2 minutes."),
    "ModelPodCrashLooping": ("warning", "A model pod is crash-looping", "Pod p keeps restarting."),
    "ModelPodOOMKilled": ("warning", "A model pod ran out of memory", "Pod p was OOM-killed."),
    "ModelAutoscalerAtMaximum": (
        "warning", "The model's autoscaler is pinned at maxReplicas",
        "The HPA has run at its maximum for 15 minutes: demand may exceed the configured capacity."),
    "GpuPodPendingTooLong": (
        "warning", "A pod asking for a GPU has been pending longer than a GPU node takes",
        "Pod model-serving/g is still pending."),
    "NodeNotReady": ("warning", "A node is not ready", "Node n has not been ready for 10 minutes."),
    "ClusterAutoscalerErrors": (
        "warning", "The cluster autoscaler reports errors",
        "Nodes may not be added or removed; see the autoscaler's log."),
    "KarpenterCloudProviderErrors": (
        "warning", "Karpenter's calls to AWS fail", "Nodes may not be launched or removed; see Karpenter's log."),
    "ModelScalerErrors": (
        "warning", "The model's autoscaler cannot read its traffic triggers",
        "KEDA's queries fail: the replica count holds at its fallback until they answer again."),
    "ModelReleaseAborted": (
        "warning", "A model release was aborted: traffic is back on the previous revision",
        "The canary failed its analysis or did not become ready; the program still declares it."),
}


# Each provisioner's own alert (infra/observability/alert_rules.py, provisioner_alert).
PROVISIONER_ONLY = {"ClusterAutoscalerErrors": False, "KarpenterCloudProviderErrors": True}


def cases(workload_kind: str, karpenter: bool = False,
          ) -> dict[str, tuple[list[dict[str, str]], list[dict[str, str]], dict[str, str]]]:
    """The alerts of a stack whose pods this kind of workload runs, each with its series."""
    return {name: NO_READY_REPLICAS[workload_kind] if name == "ModelNoReadyReplicas" else case
            for name, case in CASES.items() if KIND_ONLY.get(name, workload_kind) == workload_kind
            and PROVISIONER_ONLY.get(name, karpenter) == karpenter}


def unit_tests(workload_kind: str = "Rollout", karpenter: bool = False) -> dict[str, Any]:
    tests = []
    for name, (firing, quiet, labels) in cases(workload_kind, karpenter).items():
        severity, summary, description = FIRES_WITH[name]
        expected = {"exp_labels": {**labels, "severity": severity},
                    "exp_annotations": {"summary": summary, "description": description.format(kind=workload_kind),
                                        "runbook_url": f"{RUNBOOK}#{name.lower()}"}}
        for series, alerts_expected in ((firing, [expected]), (quiet, [])):
            tests.append({"interval": "1m", "input_series": series, "alert_rule_test": [
                {"eval_time": "29m", "alertname": name, "exp_alerts": alerts_expected}]})
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


@pytest.mark.parametrize(("workload_kind", "karpenter"), [(kind, False) for kind in WORKLOAD_KINDS] + [
    ("Rollout", True)])
def test_every_alert_fires_on_its_fault_and_stays_quiet_on_healthy_series(workload_kind: str, karpenter: bool,
                                                                          tmp_path: Path) -> None:
    groups = rule_groups(DEV_LATENCY_SLO_S, DEV_QUEUE_SLO_S, workload_kind, karpenter)
    names = [rule["alert"] for group in groups for rule in group["rules"]]
    assert sorted(cases(workload_kind, karpenter)) == sorted(names), "every alert is tested, each once"
    assert sorted(CASES) == sorted(FIRES_WITH)
    write_rules(groups, tmp_path / "rules.yaml")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests(workload_kind, karpenter), sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_catch_an_alert_that_never_fires(tmp_path: Path) -> None:
    groups = rule_groups(DEV_LATENCY_SLO_S, DEV_QUEUE_SLO_S, "Rollout")
    groups[0]["rules"][0]["expr"] += " > 1000"  # an error ratio that can never be reached
    write_rules(groups, tmp_path / "rules.yaml")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(unit_tests(), sort_keys=False))
    assert promtool("test", "rules", "tests.yaml", cwd=tmp_path).returncode != 0


# -- the names they use exist in the real server --------------------------------------------------------

def server_selectors(expressions: list[str]) -> list[tuple[str, set[str]]]:
    """(model_server metric name, label names it is matched or grouped on) in each expression."""
    found = []
    for expr in expressions:
        grouped = {label.strip() for labels in re.findall(r"by \(([^)]*)\)", expr) for label in labels.split(",")}
        for name, matchers in re.findall(r"(model_server_\w+)(?:\{([^}]*)\})?", expr):
            labels = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", matchers))
            found.append((name, labels | grouped))
    return found


def every_expression() -> list[str]:
    alerts = [alert.expr for kind in WORKLOAD_KINDS for alert in (
        *model_alerts(0.25, 0.05, kind), *workload_alerts(), *platform_alerts(), *release_alerts(),
        *scaling_alerts())]
    return alerts + [expr.replace(RATE, "5m") for kind in WORKLOAD_KINDS for panel in panels(kind)
                     for _, expr in panel.queries]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """The real server's /metrics after real traffic: sample name → label names."""
    server = start_server(tmp_path_factory.mktemp("metrics"), MODEL_MAX_BATCH_WAIT_MS="1")
    try:
        good = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
        assert server.infer(good).status == 200
        assert server.infer({"inputs": []}).status == 400
        text = server.request("GET", "/metrics").body.decode()
    finally:
        server.stop()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    yield samples


def test_every_server_metric_and_label_the_alerts_and_dashboard_use_exists(scraped: dict[str, set[str]]) -> None:
    used = server_selectors(every_expression())
    assert {name for name, _ in used} >= {"model_server_requests_total", "model_server_inflight_requests",
                                          "model_server_request_duration_seconds_bucket",
                                          "model_server_queue_wait_seconds_bucket", "model_server_batch_rows_sum"}
    for name, labels in used:
        assert name in scraped, f"{name} is not in the server's /metrics"
        assert labels <= scraped[name] | TARGET_LABELS, f"{name}: {labels - scraped[name] - TARGET_LABELS}"


def test_the_check_catches_a_renamed_metric(scraped: dict[str, set[str]]) -> None:
    renamed = server_selectors(["sum(rate(model_server_request_total[5m]))"])
    assert [name for name, _ in renamed if name not in scraped] == ["model_server_request_total"]


@pytest.mark.parametrize("workload_kind", WORKLOAD_KINDS)
def test_every_dashboard_query_is_valid_promql(workload_kind: str, tmp_path: Path) -> None:
    queries = {f"{panel.title} {legend}": expr.replace(RATE, "5m") for panel in panels(workload_kind)
               for legend, expr in panel.queries}
    result = check_expressions(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real Prometheus, a real server, real faults -------------------------------------------------------

FAULTY_MODEL = '''
from sklearn.linear_model import LogisticRegression


class FaultyClassifier(LogisticRegression):
    """Fails on rows whose first feature is over 50: the fault the tests inject."""

    def predict(self, X):
        if (X[:, 0] > 50).any():
            raise RuntimeError("injected fault")
        return super().predict(X)

    def predict_proba(self, X):
        if (X[:, 0] > 50).any():
            raise RuntimeError("injected fault")
        return super().predict_proba(X)
'''


def model_server_job(target_port: int) -> dict[str, Any]:
    """What the PodMonitor makes of the model's pod: honorLabels, and the operator's target labels."""
    return {"job_name": "podMonitor/model-serving/model-server/0", "honor_labels": True, "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"],
                                "labels": {"namespace": "model-serving", "pod": "model-server-0",
                                           "container": "model-server", "endpoint": "http"}}]}


def alert_expressions() -> dict[str, str]:
    return {alert.name: alert.expr for alert in model_alerts(DEV_LATENCY_SLO_S, DEV_QUEUE_SLO_S, "Rollout")}


def drive(server: Server, seconds: float, faulty_share: int) -> None:
    """Inference traffic; every `faulty_share`-th request carries the injected fault (0: none)."""
    deadline, sent = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        first = 99.0 if faulty_share and sent % faulty_share == 0 else 5.1
        server.infer({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [first, 3.5, 1.4, 0.2]}]})
        sent += 1


def firing(prometheus: Prometheus, names: list[str]) -> set[str]:
    expressions = alert_expressions()
    return {name for name in names if prometheus.query(expressions[name])}


OBSERVED = ["ModelEndpointErrorRatioHigh", "ModelEndpointLatencyHigh", "ModelQueueWaitHigh"]


def test_a_real_prometheus_sees_the_alert_expressions_turn_true_on_real_faults(tmp_path: Path) -> None:
    """A model that fails on some inputs (5xx) and a batch window longer than the latency and
    queue-wait objectives (dev's 250 ms and 50 ms): the expressions behind the alerts turn true.
    The same traffic to a healthy server keeps them false."""
    faulty_path, faulty_sha = write_faulty_model(tmp_path)
    groups = rule_groups(DEV_LATENCY_SLO_S, DEV_QUEUE_SLO_S, "Rollout")

    healthy_path, healthy_sha = write_model(tmp_path, "healthy.pkl")
    for model_path, sha, wait_ms, share, expected in (
            (healthy_path, healthy_sha, "0", 0, set()),
            (faulty_path, faulty_sha, "400", 5, set(OBSERVED))):
        run = tmp_path / f"run-{wait_ms}"
        run.mkdir()
        # Both processes are stopped whatever fails, starting Prometheus included.
        with contextlib.ExitStack() as running:
            server = start_server(run, model_path, sha, MODEL_WORKERS="1", MODEL_MAX_BATCH_WAIT_MS=wait_ms,
                                  PYTHONPATH=f"{app_dir()}:{tmp_path}")
            running.callback(server.stop)
            prometheus = running.enter_context(Prometheus(run, [model_server_job(server.port)], "1s",
                                                          rule_groups=groups))
            drive(server, 8, share)
            time.sleep(3)  # a few more scrapes and rule evaluations
            assert firing(prometheus, OBSERVED) == expected


def write_faulty_model(directory: Path) -> tuple[Path, str]:
    """FaultyClassifier fitted on iris and pickled; the server imports its module from `directory`."""
    import hashlib
    import importlib
    import sys

    import joblib
    from sklearn.datasets import load_iris

    (directory / "faulty.py").write_text(FAULTY_MODEL)
    sys.path.insert(0, str(directory))
    try:
        model = importlib.import_module("faulty").FaultyClassifier(max_iter=1000).fit(*load_iris(return_X_y=True))
        path = directory / "faulty.pkl"
        joblib.dump(model, path)
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("faulty", None)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def app_dir() -> str:
    from tests.support.server import APP_DIR

    return str(APP_DIR)

