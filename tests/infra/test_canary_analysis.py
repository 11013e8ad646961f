"""Canary analysis and KEDA scaling, judged by a real Prometheus scraping real model servers.

Six server processes stand in for the pods of a canary release: two pods of the stable revision
and one pod of each canary revision, each revision with its own rollouts-pod-template-hash. The
stable and a healthy canary serve the trained model; three canaries serve genuinely faulty
artifacts (tests/support/faulty_models.py): one answers 5xx, one refuses (4xx), one is slow.
Prometheus scrapes them as the operator scrapes the PodMonitor infra/observability/
model_monitoring.py declares (tests/support/prometheus.py's pod_monitor_job), and a fixed exporter
stands in for Argo Rollouts' and kube-state-metrics' replica series.

Every query is asked through Prometheus's HTTP API, with {{args.*}} replaced by the revisions'
hashes as Argo replaces them, and its RESULT is judged against the threshold its failure condition
states (the condition itself is an Argo expression only the controller evaluates: a small
evaluator of exactly its shapes stands in, tested below). The thresholds are the defaults users get.

Prometheus scrapes every second here instead of every 15 s: the queries' windows are a minute and
rate() needs two samples inside one, which a 1 s scrape gives within seconds.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.identity import StackIdentity
from infra.observability import queries
from infra.observability.model_monitoring import REVISION_POD_LABEL, model_pod_monitor
from infra.settings.models import CanarySettings, ModelServiceSettings, ObservabilitySettings
from infra.workload import analysis, scaling
from infra.workload.contract import APP_NAME, NAMESPACE, PORT_NAME, pod_labels
from tests.support.faulty_models import Traffic, out_of_domain_model, overflowing_model, slow_model
from tests.support.prometheus import (
    FixedExporter,
    MeasurementError,
    Pod,
    Prometheus,
    binary,
    check_expressions,
    condition_bound,
    condition_holds,
    pod_monitor_job,
    selectors,
)
from tests.support.server import Server, start_server, write_model

SCRAPE_INTERVAL = "1s"
CANARY, OBSERVABILITY, MODEL = CanarySettings(), ObservabilitySettings(), ModelServiceSettings()
IDENTITY = StackIdentity(name="dev", project="model-serving", tags={}, partition="aws", region="eu-west-1",
                         production=False)
HEALTH = {measure.name: measure for measure in analysis.health_measures(CANARY, OBSERVABILITY)}
TRAFFIC = {measure.name: measure for measure in analysis.traffic_measures(CANARY)}
LATENCY_BOUND_S = condition_bound(HEALTH["p99-latency"].failure_condition)
# Each pod batches for 30 ms: the queue-wait p99 then sits just under its 50 ms objective, the steady
# state in which the queue-wait trigger should ask for the replicas desired and no more.
BATCH_WAIT_MS = 30
# What the fixed exporter says of the workload during a 50% canary step: 4 replicas desired, and
# (dynamicStableScale off) the stable's 4 plus the canary's 2 available.
DESIRED, AVAILABLE = 4, 6
REPLICA_SERIES = f"""\
# TYPE rollout_info_replicas_desired gauge
rollout_info_replicas_desired{{name="{APP_NAME}",namespace="{NAMESPACE}"}} {DESIRED}
# TYPE rollout_info_replicas_available gauge
rollout_info_replicas_available{{name="{APP_NAME}",namespace="{NAMESPACE}"}} {AVAILABLE}
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{{deployment="{APP_NAME}",namespace="{NAMESPACE}"}} {DESIRED}
"""
CLIENTS_PER_POD = 2


@dataclass(frozen=True)
class Revision:
    hash: str
    artifact: Callable[[Path], tuple[Path, str]]
    pods: int
    fails: frozenset[str]  # the health checks that must abort it


def trained(directory: Path) -> tuple[Path, str]:
    return write_model(directory, "trained.pkl")


def too_slow(directory: Path) -> tuple[Path, str]:
    # Half as long again as the bound: every request, waiting for its batch, takes longer than it.
    return slow_model(directory, at_least_s=1.5 * LATENCY_BOUND_S)


REVISIONS = {
    "stable": Revision("6d8f9b7c5d", trained, 2, frozenset()),
    "healthy": Revision("5b7d6f9c8e", trained, 1, frozenset()),
    "overflowing": Revision("7c9d8b6f4a", overflowing_model, 1, frozenset({"error-ratio"})),
    "out-of-domain": Revision("84f6c7d9b5", out_of_domain_model, 1, frozenset({"refusal-increase"})),
    "slow": Revision("9e5c4b8d7f", too_slow, 1, frozenset({"p99-latency"})),
}
STABLE_HASH = REVISIONS["stable"].hash


def judged(query: str, canary_hash: str, stable_hash: str = STABLE_HASH) -> str:
    """The query as Argo sends it for this canary: its args replaced by the pods' template hashes."""
    return (query.replace(f"{{{{args.{analysis.CANARY_HASH_ARG}}}}}", canary_hash)
            .replace(f"{{{{args.{analysis.STABLE_HASH_ARG}}}}}", stable_hash))


def scaling_queries(kind: str) -> dict[str, tuple[str, float]]:
    """KEDA's Prometheus triggers for a workload kind: name → (query, threshold). Every one is an
    AverageValue trigger, for which the HPA asks ceil(value / threshold) replicas."""
    found = {}
    for trigger in scaling.triggers(MODEL, OBSERVABILITY, kind):
        if trigger["type"] == "prometheus":
            assert trigger["metricType"] == "AverageValue", "replicas_asked below assumes AverageValue"
            found[trigger["name"]] = (trigger["metadata"]["query"], float(trigger["metadata"]["threshold"]))
    return found


def replicas_asked(value: float, threshold: float) -> int:
    return math.ceil(value / threshold)


@dataclass
class Release:
    """The running release and the moments the tests judge it at (Unix seconds)."""

    prometheus: Prometheus
    idle_at: float = 0.0  # every pod scraped a few times, no request yet
    loaded_at: float = 0.0  # under traffic, every revision's series a few samples deep (the slow one idle)
    slow_loaded_at: float = 0.0  # the slow canary under traffic, alone
    settled_at: float = 0.0  # traffic stopped, every pod scraped since
    answers: dict[str, Counter[int]] = field(default_factory=dict)  # revision → status → count


def stop_all(servers: list[Server]) -> None:
    with ThreadPoolExecutor(max(1, len(servers))) as pool:
        list(pool.map(Server.stop, servers))  # each drains for a moment: stopped all at once


def start_pods(directory: Path) -> dict[str, list[Server]]:
    """Every revision's pods, started at once (each takes a second or two to import and load)."""
    paths = {name: revision.artifact(directory) for name, revision in REVISIONS.items()}
    launches = [name for name, revision in REVISIONS.items() for _ in range(revision.pods)]
    with ThreadPoolExecutor(len(launches)) as pool:
        starting = [pool.submit(start_server, directory, *paths[name], MODEL_MAX_BATCH_WAIT_MS=str(BATCH_WAIT_MS))
                    for name in launches]
    errors = [error for future in starting if (error := future.exception()) is not None]
    if errors:
        stop_all([future.result() for future in starting if future.exception() is None])
        raise errors[0]
    pods: dict[str, list[Server]] = {name: [] for name in REVISIONS}
    for name, future in zip(launches, starting, strict=True):
        pods[name].append(future.result())
    return pods


INFERENCE_SAMPLED = ('every revision\'s requests with endpoint="infer" three samples deep, and the stable\'s and '
                     "the healthy canary's enough to be promoted")
# The slow canary's model takes a whole CPU per batch: on a 2-CPU runner it would slow every other
# pod's answers too. It gets its traffic alone, after the others, and is judged at that moment.
SLOW = "slow"


def sampled(prometheus: Prometheus, names: list[str]) -> bool:
    """Three scrapes of each revision's answered requests. Its latency series, made at its first
    answer, tell: the request counters exist from the start, at 0."""
    return all(prometheus.values(f"min(count_over_time({queries.REQUEST_DURATION}_count"
                                 f'{{{queries.revision(REVISIONS[name].hash)},endpoint="infer"}}[1m]))') >= [3]
               for name in names)


def wait_for(prometheus: Prometheus, what: str, ready: Callable[[], bool], timeout_s: float = 60) -> float:
    """Poll Prometheus until `ready`; the moment it was (Unix seconds)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"Prometheus never had {what}:\n{prometheus.log_path.read_text()[-2000:]}"
        time.sleep(0.25)
    return time.time()


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    binary("prometheus")  # skipped without it (failed in CI) before anything starts
    directory = tmp_path_factory.mktemp("release")
    pods = start_pods(directory)
    try:
        scraped = [Pod(f"{APP_NAME}-{revision.hash}-{index}", server.port,
                       {**pod_labels(IDENTITY), REVISION_POD_LABEL: revision.hash}, NAMESPACE, APP_NAME, PORT_NAME)
                   for name, revision in REVISIONS.items() for index, server in enumerate(pods[name])]
        with FixedExporter(REPLICA_SERIES) as exporter, Prometheus(directory / "prometheus", [
                pod_monitor_job(model_pod_monitor(IDENTITY), scraped, SCRAPE_INTERVAL),
                # Argo's and kube-state-metrics' series carry the workload's namespace: honorLabels keeps it.
                {"job_name": "replicas", "honor_labels": True, "scrape_interval": SCRAPE_INTERVAL,
                 "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}]) as prometheus:
            state = Release(prometheus)
            # values() is [] until a series exists, and [] >= [3] is false.
            state.idle_at = wait_for(prometheus, "three scrapes of every pod", lambda: prometheus.values(
                f'min(count_over_time(up{{{queries.MODEL}}}[1m]))') >= [3])
            others = [name for name in REVISIONS if name != SLOW]
            with Traffic({name: [server.port for server in pods[name]] for name in others},
                         CLIENTS_PER_POD) as traffic:
                state.loaded_at = wait_for(prometheus, INFERENCE_SAMPLED, lambda: sampled(prometheus, others)
                                           and all(prometheus.values(judged(TRAFFIC["canary-requests"].query,
                                                                            REVISIONS[name].hash))
                                                   >= [CANARY.min_requests] for name in ("stable", "healthy")))
            with Traffic({SLOW: [server.port for server in pods[SLOW]]}, CLIENTS_PER_POD) as slow_traffic:
                state.slow_loaded_at = wait_for(prometheus, "the slow canary's requests three samples deep",
                                                lambda: sampled(prometheus, [SLOW]))
            stopped = time.time()
            state.settled_at = wait_for(prometheus, "a scrape of every pod after the traffic stopped",
                                        lambda: prometheus.values("min(timestamp(up))") > [stopped + 0.1])
            state.answers = {**traffic.answers, **slow_traffic.answers}  # final: their clients have stopped
            yield state
    finally:
        stop_all([server for servers in pods.values() for server in servers])


# -- the evaluator of Argo's conditions, on the shapes analysis.py writes --------------------------------

EVIDENCE = analysis.EVIDENCE_ABOVE.format(bound="0.01")
TOO_FEW = TRAFFIC["canary-requests"].failure_condition


@pytest.mark.parametrize(("condition", "result", "fails"), [
    (EVIDENCE, [], False),  # no series: no evidence
    (EVIDENCE, [math.nan], False),  # 0/0, no requests in the window: no evidence
    (EVIDENCE, [0.01], False),  # at the bound is within it
    (EVIDENCE, [0.0101], True),
    (EVIDENCE, [math.inf], True),
    (TOO_FEW, [0.0], True),
    (TOO_FEW, [CANARY.min_requests - 1], True),
    (TOO_FEW, [CANARY.min_requests], False),
])
def test_the_evaluator_reads_the_conditions_as_argo_does(condition: str, result: list[float], fails: bool) -> None:
    assert condition_holds(condition, result) is fails


def test_the_evaluator_errs_where_argo_errs_and_refuses_shapes_it_does_not_know() -> None:
    with pytest.raises(MeasurementError):
        condition_holds(TOO_FEW, [])  # the query behind it must never be empty
    with pytest.raises(MeasurementError):
        condition_holds("result[0] > 0.01 && len(result) > 0", [])  # a guard after the index guards nothing
    with pytest.raises(ValueError, match="not a term"):
        condition_holds("result[0] >= 0.01", [0.5])
    assert [condition_bound(measure.failure_condition) for measure in (*HEALTH.values(), *TRAFFIC.values())] == [
        CANARY.max_error_ratio, OBSERVABILITY.latency_slo_ms / 1000, CANARY.max_refusal_increase,
        CANARY.min_requests]


# -- every query parses, and uses only series and labels that exist -----------------------------------

def every_query() -> dict[str, str]:
    """Name → each query as declared (args unreplaced) and as Argo sends it."""
    found = {f"{measure.name} declared": measure.query for measure in (*HEALTH.values(), *TRAFFIC.values())}
    found |= {f"{measure.name} judged": judged(measure.query, REVISIONS["healthy"].hash)
              for measure in (*HEALTH.values(), *TRAFFIC.values())}
    return found | {f"{name} {kind}": query for kind in scaling.TARGET_APIS
                    for name, (query, _) in scaling_queries(kind).items()}


def test_promtool_parses_every_analysis_and_scaling_query(tmp_path: Path) -> None:
    checked = every_query()
    result = check_expressions(checked, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(checked)} rules found" in result.stdout


def test_promtool_rejects_a_query_that_does_not_parse(tmp_path: Path) -> None:
    assert check_expressions({"broken": HEALTH["error-ratio"].query[:-1]}, tmp_path).returncode != 0


def test_every_query_selects_series_and_labels_the_scrape_really_stores(release: Release) -> None:
    """What the servers export plus what the scrape adds (namespace, pod, the revision's hash), as
    Prometheus stored it; the replica series are the fixed exporter's, as Argo and kube-state-metrics
    name them."""
    stored = release.prometheus.series_labels(f"{{{queries.MODEL}}}")
    used = [found for query in every_query().values() for found in selectors(query)]
    assert {name for name, _ in used} >= {queries.REQUESTS, f"{queries.REQUEST_DURATION}_bucket",
                                          f"{queries.QUEUE_WAIT}_bucket", queries.INFLIGHT,
                                          "rollout_info_replicas_desired", "kube_deployment_spec_replicas"}
    for name, labels in used:
        assert name in stored, f"{name} is not among the series Prometheus stored"
        assert labels <= stored[name], f"{name}: no series carries {labels - stored[name]}"


def test_the_scrape_keeps_the_servers_endpoint_label_and_adds_each_revisions_hash(release: Release) -> None:
    """honorLabels: the server's endpoint label (infer) wins over the operator's (the port name)."""
    pairs = {(sample["metric"]["endpoint"], sample["metric"][queries.POD_TEMPLATE_HASH]) for sample in
             release.prometheus.query(f"count by (endpoint, {queries.POD_TEMPLATE_HASH}) "
                                      f"({queries.REQUESTS}{{{queries.MODEL}}})", release.settled_at)}
    assert {("infer", revision.hash) for revision in REVISIONS.values()} <= pairs
    assert not any(endpoint == PORT_NAME for endpoint, _ in pairs)


# -- the analysis: no traffic, then real traffic --------------------------------------------------------

def test_without_traffic_there_is_no_evidence_and_too_few_requests_to_promote(release: Release) -> None:
    for revision in REVISIONS.values():
        for measure in HEALTH.values():
            result = release.prometheus.values(judged(measure.query, revision.hash), release.idle_at)
            assert result == [] or (len(result) == 1 and math.isnan(result[0])), (measure.name, result)
            assert not condition_holds(measure.failure_condition, result)
        requests = release.prometheus.values(judged(TRAFFIC["canary-requests"].query, revision.hash), release.idle_at)
        assert requests == [0.0]
        assert condition_holds(TRAFFIC["canary-requests"].failure_condition, requests), "an unused canary is aborted"


@pytest.mark.parametrize("name", REVISIONS)
def test_each_revision_fails_exactly_the_checks_its_fault_shows_on(release: Release, name: str) -> None:
    """The stable judged as if it were the canary, a healthy canary and each faulty one, under the
    same valid traffic: each fault crosses its own check's threshold and stays within the others'."""
    at = release.slow_loaded_at if name == SLOW else release.loaded_at
    results = {measure.name: release.prometheus.values(judged(measure.query, REVISIONS[name].hash), at)
               for measure in HEALTH.values()}
    failed = {measure.name for measure in HEALTH.values() if condition_holds(measure.failure_condition,
                                                                             results[measure.name])}
    bounds = {measure.name: condition_bound(measure.failure_condition) for measure in HEALTH.values()}
    assert failed == REVISIONS[name].fails, f"results {results} against bounds {bounds}"


def test_the_traffic_check_counts_every_inference_request_each_revision_answered(release: Release) -> None:
    measure = TRAFFIC["canary-requests"]
    for name, revision in REVISIONS.items():
        counted = release.prometheus.values(judged(measure.query, revision.hash), release.settled_at)
        assert counted == [float(release.answers[name].total())], name
    for name in ("stable", "healthy"):  # the fixture's traffic went on until they had enough
        assert not condition_holds(measure.failure_condition, [release.answers[name].total()])


# -- KEDA's triggers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", scaling.TARGET_APIS)
def test_idle_every_trigger_answers_zero_replicas(release: Release, kind: str) -> None:
    for name, (query, threshold) in scaling_queries(kind).items():
        assert release.prometheus.values(query, release.idle_at) == [0.0], name
        assert replicas_asked(0.0, threshold) == 0


@pytest.mark.parametrize("kind", scaling.TARGET_APIS)
def test_under_load_every_trigger_asks_for_replicas(release: Release, kind: str) -> None:
    triggers = scaling_queries(kind)
    inflight_query, inflight_target = triggers["inflight-requests"]
    [inflight] = release.prometheus.values(inflight_query, release.loaded_at)
    # At most every client's request is in flight at once, and with 30 ms batches most are.
    clients = CLIENTS_PER_POD * sum(revision.pods for name, revision in REVISIONS.items() if name != SLOW)
    assert 1 <= inflight <= clients
    assert replicas_asked(inflight, inflight_target) >= 1
    queue_query, queue_target = triggers["queue-wait"]
    [pressure] = release.prometheus.values(queue_query, release.loaded_at)
    assert replicas_asked(pressure, queue_target) >= 1


@pytest.mark.parametrize("kind", scaling.TARGET_APIS)
def test_the_queue_wait_trigger_asks_for_what_the_traffic_needs_during_a_canary(release: Release, kind: str) -> None:
    """Desired 4, six pods reporting (the stable's 4 and a 50% canary's 2): the trigger asks for the
    desired replicas times p99/objective. A Value trigger on p99/objective would be multiplied by the
    six pods the scale subresource counts, ask for more, get it, and ask again (a ratchet)."""
    query, target = scaling_queries(kind)["queue-wait"]
    at = release.loaded_at
    p99 = release.prometheus.values(f"histogram_quantile(0.99, sum by (le) (rate({queries.QUEUE_WAIT}_bucket"
                                    f"{{{queries.MODEL}}}[{queries.ANALYSIS_WINDOW}])))", at)[0]
    # The scenario: the pods batch (every request waits its 30 ms at least), so p99/objective is over
    # 1/3, where the ceilings below tell four replicas' ask from six's. A busy runner only raises it.
    assert p99 > BATCH_WAIT_MS / 1000, "the scenario: pods batching"
    pressure = p99 / (OBSERVABILITY.queue_wait_slo_ms / 1000)
    [reporting] = release.prometheus.values(f"count({queries.INFLIGHT}{{{queries.MODEL}}})", at)
    assert reporting == AVAILABLE
    [value] = release.prometheus.values(query, at)
    assert value == pytest.approx(DESIRED * pressure)
    assert replicas_asked(value, target) == math.ceil(DESIRED * pressure)
    assert replicas_asked(value, target) < math.ceil(reporting * pressure), "no more than a Value trigger would"


def test_once_traffic_stops_every_trigger_falls_back_to_zero_never_empty_nor_nan(release: Release) -> None:
    """KEDA reads each trigger every pollingInterval with ignoreNullValues false: an empty or NaN
    answer at any moment is an error. Polled each second until the queue-wait window (a minute) has
    drained."""
    watched = {f"{name} {kind}": query for kind in scaling.TARGET_APIS for name, (query, _) in
               scaling_queries(kind).items()}
    deadline = time.monotonic() + 90
    while True:
        answers = {name: release.prometheus.values(query) for name, query in watched.items()}
        for name, answer in answers.items():
            assert len(answer) == 1 and math.isfinite(answer[0]) and answer[0] >= 0, (name, answer)
        if all(answer == [0.0] for answer in answers.values()):
            return
        assert time.monotonic() < deadline, f"still asking for replicas 90 s after the traffic stopped: {answers}"
        time.sleep(1)
