"""The model-serving Grafana dashboard, as code: one table of panels, each a title, a unit and
its queries. Provisioned through the chart's dashboard sidecar (a ConfigMap labelled
grafana_dashboard); the Prometheus data source is the chart's, uid `prometheus`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.observability.queries import (
    BATCH_ROWS,
    INFERENCE,
    INFLIGHT,
    MODEL,
    MODEL_INFO,
    QUEUE_WAIT,
    REQUEST_DURATION,
    REQUESTS,
    available_replicas,
    quantile,
    status_ratio,
)
from infra.workload.contract import APP_NAME, NAMESPACE

DASHBOARD_UID = "model-serving"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"  # Grafana's interval macro; offline checks put 5m in its place
PANEL_WIDTH, PANEL_HEIGHT = 12, 8


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (legend, PromQL)
    gpu_only: bool = False


# dcgm-exporter labels each GPU's series with the namespace, pod and container it is assigned to;
# scraped through its ServiceMonitor they arrive as exported_* beside the exporter's own. These are
# the GPUs of the model's own pods, not of whatever else shares the GPU nodes.
MODEL_GPUS = f'exported_namespace="{NAMESPACE}",exported_container="{APP_NAME}"'


def latency(histogram: str, selector: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"p{int(q * 100)}", quantile(q, histogram, selector, RATE)) for q in (0.5, 0.9, 0.99))


def panels(workload_kind: str) -> tuple[Panel, ...]:
    """The dashboard's panels; replicas come from the series of the kind of controller running the pods."""
    return (
        Panel("Requests per second by status", "reqps", (
            ("{{status}}", f"sum by (status) (rate({REQUESTS}{{{INFERENCE}}}[{RATE}]))"),)),
        Panel("Errors (5xx) as a share of requests", "percentunit", (
            ("5xx", status_ratio("5", RATE)),
            ("4xx", status_ratio("4", RATE)))),
        Panel("Inference latency", "s", latency(REQUEST_DURATION, INFERENCE)),
        Panel("Queue wait before a batch", "s", latency(QUEUE_WAIT, MODEL)),
        Panel("Rows per predict call", "short", (
            ("mean", f"sum(rate({BATCH_ROWS}_sum{{{MODEL}}}[{RATE}]))"
                     f" / sum(rate({BATCH_ROWS}_count{{{MODEL}}}[{RATE}]))"),)),
        Panel("Requests in flight per pod", "short", (
            ("{{pod}}", f"sum by (pod) ({INFLIGHT}{{{MODEL}}})"),)),
        Panel("Replicas", "short", (
            ("available", available_replicas(workload_kind)),
            ("desired by the autoscaler", f"kube_horizontalpodautoscaler_status_desired_replicas{{{MODEL}}}"),
            ("maximum", f"kube_horizontalpodautoscaler_spec_max_replicas{{{MODEL}}}"))),
        Panel("CPU per pod (cores)", "short", (
            ("{{pod}}", f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{MODEL},container="{APP_NAME}"}}'
                        f"[{RATE}]))"),)),
        Panel("Memory per pod (working set)", "bytes", (
            ("{{pod}}", f'sum by (pod) (container_memory_working_set_bytes{{{MODEL},container="{APP_NAME}"}})'),)),
        # The device each pod's server says it runs on (a CUDA pod that fell back to CPU shows here).
        Panel("Pods by runtime and device", "short", (
            ("{{runtime}} on {{device}}", f"count by (runtime, device) ({MODEL_INFO}{{{MODEL}}})"),)),
        Panel("GPU utilisation", "percent", (
            ("{{exported_pod}}", f"avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{{{MODEL_GPUS}}})"),),
            gpu_only=True),
        Panel("GPU memory used", "decmbytes", (
            ("{{exported_pod}}", f"sum by (exported_pod) (DCGM_FI_DEV_FB_USED{{{MODEL_GPUS}}})"),),
            gpu_only=True),
    )


def dashboard(with_gpu: bool, workload_kind: str) -> dict[str, object]:
    """`with_gpu`: the model runs on a GPU pool (elsewhere its pods have no GPU series to show)."""
    shown = [panel for panel in panels(workload_kind) if with_gpu or not panel.gpu_only]
    return {
        "uid": DASHBOARD_UID,
        "title": "Model serving",
        "tags": ["model-serving"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "panels": [{
            "id": number,
            "type": "timeseries",
            "title": panel.title,
            "datasource": DATASOURCE,
            "gridPos": {"x": (number - 1) % 2 * PANEL_WIDTH, "y": (number - 1) // 2 * PANEL_HEIGHT,
                        "w": PANEL_WIDTH, "h": PANEL_HEIGHT},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend} for index, (legend, expr) in enumerate(panel.queries)],
        } for number, panel in enumerate(shown, start=1)],
    }


def dashboard_json(with_gpu: bool, workload_kind: str) -> str:
    return json.dumps(dashboard(with_gpu, workload_kind), indent=2, sort_keys=True)
