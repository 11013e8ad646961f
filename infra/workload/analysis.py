"""How a canary is judged: the AnalysisTemplates Argo Rollouts runs against the in-cluster Prometheus.

- `canary-health` runs in the background from the first step to promotion, one measurement every
  `analysisIntervalSeconds`: the canary's 5xx ratio, its p99 latency against the latency objective,
  and how much more of its inference requests it refuses (4xx) than the stable pods over the same
  window. A model that raises on valid input is answered 400 (app/model_server/batching.py), so a
  4xx burst only the canary shows is a bad release, not bad clients.
- `canary-traffic` runs once before the canary takes all traffic: it must have answered
  `minRequests` inference requests. A canary too little used to judge is aborted, never promoted
  blindly; the release fails in seconds instead of pausing until someone looks.

Each condition is an `expr` expression only the controller evaluates. A window with no requests
gives no evidence either way: the result is empty or NaN, and the conditions let it pass (the
traffic check catches a canary that never had any). A query that errors (Prometheus down) is an
Error measurement: after `consecutiveErrorLimit` in a row the analysis ends in Error, and Argo
aborts on Error as on Failed (https://argo-rollouts.readthedocs.io/en/stable/features/analysis/),
so an outage never promotes a canary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.observability import queries
from infra.settings import CanarySettings, ObservabilitySettings
from infra.workload.contract import APP_NAME

ANALYSIS_API = "argoproj.io/v1alpha1"
HEALTH_TEMPLATE = f"{APP_NAME}-canary-health"
TRAFFIC_TEMPLATE = f"{APP_NAME}-canary-traffic"
CANARY_HASH_ARG, STABLE_HASH_ARG = "canary-hash", "stable-hash"
CANARY = queries.revision(f"{{{{args.{CANARY_HASH_ARG}}}}}")
STABLE = queries.revision(f"{{{{args.{STABLE_HASH_ARG}}}}}")
# Errors in a row (Prometheus unreachable, a bad answer) before the analysis ends in Error: Argo's
# default, 4, at the default 10 s interval gives Prometheus 40 s to come back.
CONSECUTIVE_ERROR_LIMIT = 4
# The traffic check's window reaches back past the canary's start: its pods' counters start at 0.
TRAFFIC_WINDOW_MARGIN_S = 300
# A measured number, and above the bound: no data (empty, NaN) is no evidence.
EVIDENCE_ABOVE = "len(result) > 0 && !isNaN(result[0]) && result[0] > {bound}"


@dataclass(frozen=True)
class Measure:
    """One metric of an analysis: what it asks Prometheus, and when the answer fails the canary."""

    name: str
    query: str
    failure_condition: str
    count: int | None = None  # None: until the rollout completes (background)


def health_measures(canary: CanarySettings, observability: ObservabilitySettings) -> list[Measure]:
    return [
        Measure("error-ratio", queries.error_ratio(CANARY),
                EVIDENCE_ABOVE.format(bound=f"{canary.max_error_ratio:g}")),
        Measure("p99-latency", queries.latency_p99(CANARY),
                EVIDENCE_ABOVE.format(bound=f"{observability.latency_slo_ms / 1000:g}")),
        Measure("refusal-increase", queries.refusal_increase(CANARY, STABLE),
                EVIDENCE_ABOVE.format(bound=f"{canary.max_refusal_increase:g}")),
    ]


def traffic_measures(canary: CanarySettings) -> list[Measure]:
    window = f"{canary.judged_seconds + TRAFFIC_WINDOW_MARGIN_S}s"
    return [Measure("canary-requests", queries.served_requests(CANARY, window),
                    f"result[0] < {canary.min_requests}", count=1)]


def analysis_template(name: str, arguments: list[str], measures: list[Measure], canary: CanarySettings,
                      ) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    for measure in measures:
        metric: dict[str, Any] = {
            "name": measure.name,
            "interval": f"{canary.analysis_interval_seconds}s",
            "failureLimit": canary.failure_limit,
            "consecutiveErrorLimit": CONSECUTIVE_ERROR_LIMIT,
            "failureCondition": measure.failure_condition,
            "provider": {"prometheus": {"address": queries.PROMETHEUS_URL, "query": measure.query}},
        }
        if measure.count is not None:
            metric["count"] = measure.count
        metrics.append(metric)
    return {"args": [{"name": argument} for argument in arguments], "metrics": metrics}


def templates(canary: CanarySettings, observability: ObservabilitySettings) -> dict[str, dict[str, Any]]:
    """The AnalysisTemplates' specs by name."""
    return {
        HEALTH_TEMPLATE: analysis_template(HEALTH_TEMPLATE, [CANARY_HASH_ARG, STABLE_HASH_ARG],
                                           health_measures(canary, observability), canary),
        TRAFFIC_TEMPLATE: analysis_template(TRAFFIC_TEMPLATE, [CANARY_HASH_ARG], traffic_measures(canary), canary),
    }


def hash_args(*arguments: str) -> list[dict[str, Any]]:
    """The Rollout's args for a template: the canary's pod-template hash (Latest), the stable's (Stable)."""
    source = {CANARY_HASH_ARG: "Latest", STABLE_HASH_ARG: "Stable"}
    return [{"name": argument, "valueFrom": {"podTemplateHashValue": source[argument]}} for argument in arguments]
