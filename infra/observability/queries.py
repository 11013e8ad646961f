"""Named PromQL over the model server's metrics: the one vocabulary that alerts and the dashboard
use (and, next, canary analysis and autoscaling). Series names come from app/model_server/metrics.py;
the namespace and workload names from the workload's contract.

Each query takes its range (`window`): alerts use a fixed 5m, the dashboard Grafana's
$__rate_interval.
"""

from __future__ import annotations

from infra.workload.contract import APP_NAME, NAMESPACE

# Every series of the model server's pods, and its inference endpoints among them.
MODEL = f'namespace="{NAMESPACE}"'
INFERENCE = f'{MODEL},endpoint=~"infer|v1_predict"'
REQUESTS = "model_server_requests_total"
REQUEST_DURATION = "model_server_request_duration_seconds"
QUEUE_WAIT = "model_server_queue_wait_seconds"
INFLIGHT = "model_server_inflight_requests"
BATCH_ROWS = "model_server_batch_rows"
# The workload's replica series, by the kind of controller that runs its pods: kube-state-metrics
# exports these for Deployments.
AVAILABLE_REPLICAS = {"Deployment": f'kube_deployment_status_replicas_available{{{MODEL},deployment="{APP_NAME}"}}'}


def quantile(q: float, histogram: str, selector: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{selector}}}[{window}])))"


def status_ratio(status_class: str, window: str) -> str:
    """The share of the model's requests answered with a status of this class ("5" for 5xx)."""
    return (f'sum(rate({REQUESTS}{{{MODEL},status=~"{status_class}.."}}[{window}]))'
            f" / sum(rate({REQUESTS}{{{MODEL}}}[{window}]))")


def available_replicas(workload_kind: str) -> str:
    return AVAILABLE_REPLICAS[workload_kind]
