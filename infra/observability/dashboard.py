"""The model-serving Grafana dashboard, as code: one table of panels, each a title, a unit and
its queries. Provisioned through the chart's dashboard sidecar (a ConfigMap labelled
grafana_dashboard); the Prometheus data source is the chart's, uid `prometheus`."""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.model_service import APP_NAME, NAMESPACE

DASHBOARD_UID = "model-serving"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
MODEL = f'namespace="{NAMESPACE}"'
INFERENCE = f'{MODEL},endpoint=~"infer|v1_predict"'
RATE = "$__rate_interval"  # Grafana's interval macro; offline checks put 5m in its place
PANEL_WIDTH, PANEL_HEIGHT = 12, 8


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (legend, PromQL)
    gpu_only: bool = False


def latency(histogram: str, selector: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"p{int(q * 100)}", f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{selector}}}"
                                      f"[{RATE}])))") for q in (0.5, 0.9, 0.99))


PANELS = (
    Panel("Requests per second by status", "reqps", (
        ("{{status}}", f"sum by (status) (rate(model_server_requests_total{{{INFERENCE}}}[{RATE}]))"),)),
    Panel("Errors (5xx) as a share of requests", "percentunit", (
        ("5xx", f'sum(rate(model_server_requests_total{{{MODEL},status=~"5.."}}[{RATE}]))'
                f" / sum(rate(model_server_requests_total{{{MODEL}}}[{RATE}]))"),
        ("4xx", f'sum(rate(model_server_requests_total{{{MODEL},status=~"4.."}}[{RATE}]))'
                f" / sum(rate(model_server_requests_total{{{MODEL}}}[{RATE}]))"))),
    Panel("Inference latency", "s", latency("model_server_request_duration_seconds", INFERENCE)),
    Panel("Queue wait before a batch", "s", latency("model_server_queue_wait_seconds", MODEL)),
    Panel("Rows per predict call", "short", (
        ("mean", f"sum(rate(model_server_batch_rows_sum{{{MODEL}}}[{RATE}]))"
                 f" / sum(rate(model_server_batch_rows_count{{{MODEL}}}[{RATE}]))"),)),
    Panel("Requests in flight per pod", "short", (
        ("{{pod}}", f"sum by (pod) (model_server_inflight_requests{{{MODEL}}})"),)),
    Panel("Replicas", "short", (
        ("available", f'kube_deployment_status_replicas_available{{{MODEL},deployment="{APP_NAME}"}}'),
        ("desired by the autoscaler", f"kube_horizontalpodautoscaler_status_desired_replicas{{{MODEL}}}"),
        ("maximum", f"kube_horizontalpodautoscaler_spec_max_replicas{{{MODEL}}}"))),
    Panel("CPU per pod (cores)", "short", (
        ("{{pod}}", f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{MODEL},container="{APP_NAME}"}}'
                    f"[{RATE}]))"),)),
    Panel("Memory per pod (working set)", "bytes", (
        ("{{pod}}", f'sum by (pod) (container_memory_working_set_bytes{{{MODEL},container="{APP_NAME}"}})'),)),
    # dcgm-exporter's own namespace and pod labels become exported_* beside the target's.
    Panel("GPU utilisation", "percent", (
        ("{{exported_pod}}", f'avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{NAMESPACE}"}})'),),
        gpu_only=True),
    Panel("GPU memory used", "decmbytes", (
        ("{{exported_pod}}", f'sum by (exported_pod) (DCGM_FI_DEV_FB_USED{{exported_namespace="{NAMESPACE}"}})'),),
        gpu_only=True),
)


def dashboard(with_gpu: bool) -> dict[str, object]:
    panels = [panel for panel in PANELS if with_gpu or not panel.gpu_only]
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
        } for number, panel in enumerate(panels, start=1)],
    }


def dashboard_json(with_gpu: bool) -> str:
    return json.dumps(dashboard(with_gpu), indent=2, sort_keys=True)
