"""Named PromQL over the model server's metrics: the one vocabulary that alerts, the dashboard,
canary analysis and autoscaling all use. Series names come from app/model_server/metrics.py, Argo
Rollouts' and KEDA's exporters; the namespace and workload names from the workload's contract.

Each query takes its range (`window`): alerts use a fixed 5m, the dashboard Grafana's
$__rate_interval, canary analysis and scaling a minute (four scrapes at 15 s: rate() needs two).
"""

from __future__ import annotations

from infra.workload.contract import APP_NAME, NAMESPACE

# The in-cluster Prometheus (kube-prometheus-stack, fullnameOverride "monitoring", infra/observability/
# metrics.py) that canary analysis and KEDA ask.
PROMETHEUS_URL = "http://monitoring-prometheus.monitoring.svc:9090"
# Every series of the model server's pods, and its inference endpoints among them.
MODEL = f'namespace="{NAMESPACE}"'
INFERENCE_ENDPOINTS = 'endpoint=~"infer|v1_predict"'
INFERENCE = f"{MODEL},{INFERENCE_ENDPOINTS}"
# The pod label rollouts-pod-template-hash as the PodMonitor attaches it to every series (Prometheus
# label names take no '-'): it tells a canary's series from the stable revision's.
POD_TEMPLATE_HASH = "rollouts_pod_template_hash"
REQUESTS = "model_server_requests_total"
REQUEST_DURATION = "model_server_request_duration_seconds"
QUEUE_WAIT = "model_server_queue_wait_seconds"
INFLIGHT = "model_server_inflight_requests"
BATCH_ROWS = "model_server_batch_rows"
MODEL_INFO = "model_server_model_info"  # labels: name, version, sha256, runtime, device
ANALYSIS_WINDOW = "1m"
# The workload's replica series, by the kind of controller that runs its pods: kube-state-metrics
# exports them for Deployments and has none for Rollouts, whose controller exports its own
# (rollout_info_*, https://argo-rollouts.readthedocs.io/en/stable/features/controller-metrics/).
AVAILABLE_REPLICAS = {
    "Deployment": f'kube_deployment_status_replicas_available{{{MODEL},deployment="{APP_NAME}"}}',
    "Rollout": f'rollout_info_replicas_available{{{MODEL},name="{APP_NAME}"}}',
}
DESIRED_REPLICAS = {
    "Deployment": f'kube_deployment_spec_replicas{{{MODEL},deployment="{APP_NAME}"}}',
    "Rollout": f'rollout_info_replicas_desired{{{MODEL},name="{APP_NAME}"}}',
}


def quantile(q: float, histogram: str, selector: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{selector}}}[{window}])))"


def status_ratio(status_class: str, window: str, selector: str = MODEL) -> str:
    """The share of the selected requests answered with a status of this class ("5" for 5xx): NaN
    (0/0) when there were none, and no result when no pod was scraped."""
    return (f'sum(rate({REQUESTS}{{{selector},status=~"{status_class}.."}}[{window}]))'
            f" / sum(rate({REQUESTS}{{{selector}}}[{window}]))")


def available_replicas(workload_kind: str) -> str:
    return AVAILABLE_REPLICAS[workload_kind]


def zero_when_empty(query: str) -> str:
    """The query, or 0 where it has no number: NaN (no traffic) and an empty result both become 0,
    so a trigger that must always answer does (NaN >= 0 is false, and `or` fills the gap)."""
    return f"((({query}) >= 0) or on() vector(0))"


# -- one revision of the workload, for canary analysis (Argo fills in {{args.*}}) --------------------

def revision(pod_template_hash: str) -> str:
    """The series of one revision's pods."""
    return f'{MODEL},{POD_TEMPLATE_HASH}="{pod_template_hash}"'


def error_ratio(revision_selector: str, window: str = ANALYSIS_WINDOW) -> str:
    """The share of one revision's inference requests answered with a 5xx (probes and scrapes, always
    200, would only dilute it)."""
    return status_ratio("5", window, f"{revision_selector},{INFERENCE_ENDPOINTS}")


def latency_p99(revision_selector: str, window: str = ANALYSIS_WINDOW) -> str:
    return quantile(0.99, REQUEST_DURATION, f"{revision_selector},{INFERENCE_ENDPOINTS}", window)


def refusal_ratio(revision_selector: str, window: str = ANALYSIS_WINDOW) -> str:
    """The share of one revision's inference requests it refused (4xx)."""
    return status_ratio("4", window, f"{revision_selector},{INFERENCE_ENDPOINTS}")


def refusal_increase(canary_selector: str, stable_selector: str, window: str = ANALYSIS_WINDOW) -> str:
    """How much more of its inference requests the canary refuses than the stable revision, over the
    same window (the stable side counts as 0 when it had no traffic)."""
    stable = zero_when_empty(refusal_ratio(stable_selector, window))
    return f"({refusal_ratio(canary_selector, window)}) - on() {stable}"


def served_requests(revision_selector: str, window: str) -> str:
    """Inference requests one revision's pods answered within the window: each pod's counters start
    at 0, so their largest values add up to the total (0 when no pod was ever scraped)."""
    return f"(sum(max_over_time({REQUESTS}{{{revision_selector},{INFERENCE_ENDPOINTS}}}[{window}])) or on() vector(0))"


# -- the whole workload, for KEDA's triggers ----------------------------------------------------------

def inflight_requests() -> str:
    """Requests in flight over every pod: with metricType AverageValue KEDA divides it by the target
    per pod, so canary pods counted in the scale subresource change nothing."""
    return f"(sum({INFLIGHT}{{{MODEL}}}) or on() vector(0))"


def queue_wait_pressure(queue_wait_slo_s: float, workload_kind: str) -> str:
    """The queue-wait p99 as a multiple of its objective, times the replicas asked for: as an
    AverageValue with target 1 it asks for replicas * p99 / objective. A Value trigger would multiply
    by the scale subresource's count, which during a canary includes the canary pods (argo-rollouts
    v1.9.1, with dynamicStableScale off) and would ratchet the count up at every evaluation."""
    return (f"{zero_when_empty(quantile(0.99, QUEUE_WAIT, MODEL, ANALYSIS_WINDOW))} / {queue_wait_slo_s:g}"
            f" * on() max({DESIRED_REPLICAS[workload_kind]})")
