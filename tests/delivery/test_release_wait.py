"""The release wait `pulumi up` runs after applying a Rollout: its verdicts on recorded Rollouts
and AnalysisRuns, its polling loop on a fake clock, and its command line."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from delivery.kube import KubeError
from delivery.release_wait import Outcome, Verdict, assess, main, wait_for_release
from tests.delivery.test_rollback import recorded, serve

README = 'see README "Releasing a model"'
PROMOTE_OR_ABORT = ("it cannot resume by itself: run `kubectl argo rollouts promote model-server -n model-serving` "
                    "to go on, or `kubectl argo rollouts abort model-server -n model-serving` to put all traffic "
                    "back on the stable revision")
Document = dict[str, Any]


def state(name: str) -> tuple[Document, list[Document]]:
    documents = recorded(name)
    return documents["Rollout"][0], documents.get("AnalysisRun", [])


def verdict(name: str) -> Verdict:
    return assess(*state(name))


class FakeCluster:
    """Answers each poll with the next recorded state (the last one repeats), selecting
    AnalysisRuns by label as the API server does."""

    namespace = "model-serving"

    def __init__(self, *states: tuple[Document, list[Document]] | KubeError) -> None:
        self.states = list(states)
        self.polls = 0
        self.selectors: list[str] = []
        self.runs: list[Document] = []

    def rollout(self, name: str) -> Document:
        assert name == "model-server"
        answer = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        if isinstance(answer, KubeError):
            raise answer
        rollout, self.runs = copy.deepcopy(answer)
        return rollout

    def analysis_runs(self, label_selector: str) -> list[Document]:
        self.selectors.append(label_selector)
        key, value = label_selector.split("=")
        return [run for run in self.runs if run["metadata"]["labels"].get(key) == value]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run_loop(cluster: FakeCluster, timeout_s: float = 60,
             interval_s: float = 5) -> tuple[Verdict, list[str], FakeClock]:
    clock, lines = FakeClock(), list[str]()
    result = wait_for_release(cluster, "model-server", timeout_s, interval_s, clock=clock, sleep=clock.sleep,
                              progress=lines.append)
    return result, lines, clock


# -- verdicts ----------------------------------------------------------------------------------------

def test_a_fully_promoted_healthy_revision_is_released() -> None:
    assert verdict("release-healthy.yaml") == Verdict(
        Outcome.RELEASED, "released: model-server revision 4 (6d4f9c8b7d) is fully promoted and Healthy")


def test_an_aborted_release_names_the_failed_metric_its_value_and_condition() -> None:
    # The fixture also holds a failed run of the same pods from an earlier attempt (revision 4,
    # p99-latency): only this revision's run may be named.
    assert verdict("release-aborted.yaml") == Verdict(Outcome.FAILED, (
        'release aborted: metric error-ratio failed: value [0.23] met failure condition "len(result) > 0 && '
        '!isNaN(result[0]) && result[0] > 0.01" (AnalysisRun model-server-6d4f9c8b7d-6); traffic is back on the '
        f"stable revision; {README}"))


def test_an_analysis_that_could_not_measure_is_named_with_the_providers_error() -> None:
    rollout, runs = state("release-aborted.yaml")
    (current,) = [run for run in runs if run["metadata"]["name"] == "model-server-6d4f9c8b7d-6"]
    error_ratio = current["status"]["metricResults"][0]
    error_ratio["phase"] = current["status"]["phase"] = "Error"
    error_ratio["measurements"][-1] = {"phase": "Error", "message": 'Post "http://monitoring-prometheus.monitoring.'
                                                                    'svc:9090/api/v1/query": dial tcp: i/o timeout'}
    assert assess(rollout, runs).message.startswith(
        'release aborted: metric error-ratio could not be measured: Post "http://monitoring-prometheus.monitoring.'
        'svc:9090/api/v1/query": dial tcp: i/o timeout (AnalysisRun model-server-6d4f9c8b7d-6); traffic is back')


def test_an_abort_without_a_failed_metric_gives_argos_reason() -> None:
    assert verdict("release-progress-deadline.yaml") == Verdict(Outcome.FAILED, (
        'release aborted: RolloutAborted: Rollout aborted update to revision 4: ReplicaSet "model-server-6d4f9c8b7d" '
        f"has timed out progressing; traffic is back on the stable revision; {README}"))


def test_an_abort_the_controller_has_not_reconciled_yet_is_waited_for() -> None:
    rollout, runs = state("release-paused-step.yaml")
    rollout["status"]["abort"] = True  # `kubectl argo rollouts abort` a moment ago
    assert assess(rollout, runs).outcome is Outcome.WAITING


def test_degraded_without_an_abort_fails_saying_where_it_stands() -> None:
    assert verdict("release-invalid-spec.yaml") == Verdict(Outcome.FAILED, (
        'release failed: step 5/5, canary weight 0%, phase Degraded: InvalidSpec: The Rollout "model-server" is '
        'invalid: spec.strategy.canary.trafficRouting.alb.ingress: Invalid value: "model-server": ingress '
        "`model-server` has no rules using service model-server backend; Argo will not go on by itself: fix the "
        "cause and deploy again; while a canary takes traffic, `make rollback STACK=<stack>` (or `kubectl argo "
        "rollouts abort model-server -n model-serving`) puts all of it back on the stable revision; "
        f"{README}"))


def test_a_healthy_status_from_before_the_apply_never_passes() -> None:
    rollout, _ = state("release-stale.yaml")
    assert rollout["status"]["phase"] == "Healthy"
    assert rollout["status"]["stableRS"] == rollout["status"]["currentPodHash"]
    assert assess(rollout, []) == Verdict(
        Outcome.WAITING, "waiting for the Argo Rollouts controller to observe generation 8 (it has observed 7)")


def test_a_timed_pause_step_is_progress() -> None:
    assert verdict("release-paused-step.yaml") == Verdict(
        Outcome.WAITING, "step 1/5, canary weight 10%, phase Paused: CanaryPauseStep")


def untimed_pause_step(rollout: Document, runs: list[Document]) -> None:
    del rollout["spec"]["strategy"]["canary"]["steps"][1]["pause"]["duration"]


def inconclusive_analysis(rollout: Document, runs: list[Document]) -> None:
    # What Argo writes when a run ends Inconclusive (rollout/analysis.go): a pause, no abort.
    rollout["status"]["pauseConditions"] = [{"reason": "InconclusiveAnalysisRun",
                                             "startTime": "2026-11-18T09:01:10Z"}]
    rollout["status"]["message"] = "InconclusiveAnalysisRun"
    run = runs[0]
    run["status"]["phase"] = "Inconclusive"
    run["status"]["metricResults"][1]["phase"] = "Inconclusive"
    run["status"]["metricResults"][1]["measurements"][-1].update({"phase": "Inconclusive", "value": "[0.37]"})


@pytest.mark.parametrize(("fixture", "change", "expected"), [
    ("release-paused-by-hand.yaml", None,
     "release paused by hand (spec.paused) at step 2/5, canary weight 10%, phase Paused: manually paused"),
    ("release-paused-step.yaml", untimed_pause_step,
     "release paused at step 1/5, canary weight 10%, phase Paused: CanaryPauseStep: a pause step without a "
     "duration waits for a person"),
    ("release-paused-step.yaml", inconclusive_analysis,
     "release paused at step 1/5, canary weight 10%, phase Paused: InconclusiveAnalysisRun: metric p99-latency "
     "was inconclusive: value [0.37] (AnalysisRun model-server-6d4f9c8b7d-4)"),
], ids=["spec.paused", "pause without duration", "inconclusive analysis"])
def test_a_pause_only_a_person_can_end_fails_at_once_saying_what_to_run(fixture: str, change: Any,
                                                                        expected: str) -> None:
    rollout, runs = state(fixture)
    if change:
        change(rollout, runs)
    result, _, clock = run_loop(FakeCluster((rollout, runs)))
    assert result == Verdict(Outcome.FAILED, f"{expected}; {PROMOTE_OR_ABORT}")
    assert clock.slept == []


# -- the loop ----------------------------------------------------------------------------------------

def test_it_waits_through_a_timed_pause_until_promoted_saying_each_change_once() -> None:
    cluster = FakeCluster(state("release-stale.yaml"), state("release-paused-step.yaml"),
                          state("release-paused-step.yaml"), state("release-healthy.yaml"))
    result, lines, clock = run_loop(cluster)
    assert result.outcome is Outcome.RELEASED
    assert lines == ["model-server: waiting for the Argo Rollouts controller to observe generation 8 (it has "
                     "observed 7)",
                     "model-server: step 1/5, canary weight 10%, phase Paused: CanaryPauseStep"]
    assert clock.slept == [5, 5, 5]
    assert cluster.selectors[-1] == "rollouts-pod-template-hash=6d4f9c8b7d"


def test_a_stale_healthy_keeps_it_waiting_until_the_timeout() -> None:
    cluster = FakeCluster(state("release-stale.yaml"))
    result, _, clock = run_loop(cluster, timeout_s=60)
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("release timed out after 60 s: waiting for the Argo Rollouts controller to "
                                     "observe generation 8 (it has observed 7); ")
    assert cluster.polls == 13 and sum(clock.slept) == 60


def test_at_the_timeout_it_says_where_the_release_stood() -> None:
    result, lines, clock = run_loop(FakeCluster(state("release-progressing.yaml")), timeout_s=12, interval_s=5)
    assert result == Verdict(Outcome.FAILED, (
        "release timed out after 12 s: step 2/5, canary weight 10%, phase Progressing: more replicas need to be "
        "updated; Argo goes on without pulumi: follow it with `kubectl argo rollouts get rollout model-server -n "
        f"model-serving`, or `make rollback STACK=<stack>` to stop it; {README}"))
    assert clock.slept == [5, 5, 2]  # the last look is at the deadline, not past it
    assert lines == ["model-server: step 2/5, canary weight 10%, phase Progressing: more replicas need to be updated"]


def test_an_aborted_release_fails_at_the_first_look() -> None:
    result, _, clock = run_loop(FakeCluster(state("release-aborted.yaml")))
    assert result.message.startswith("release aborted: metric error-ratio failed")
    assert clock.slept == []


def test_the_cluster_failing_to_answer_is_waited_out_but_a_refusal_is_not() -> None:
    flaky = FakeCluster(KubeError("reading rollout model-serving/model-server: HTTP 503: etcd leader changed",
                                  retryable=True), state("release-healthy.yaml"))
    result, lines, _ = run_loop(flaky)
    assert result.outcome is Outcome.RELEASED
    assert lines == ["model-server: the cluster did not answer (reading rollout model-serving/model-server: HTTP 503: "
                     "etcd leader changed); asking again"]
    refused = FakeCluster(KubeError('reading rollout model-serving/model-server: HTTP 403: rollouts.argoproj.io '
                                    '"model-server" is forbidden', retryable=False))
    result, _, clock = run_loop(refused)
    assert result == Verdict(Outcome.FAILED, 'cannot follow the release: reading rollout model-serving/model-server: '
                                             'HTTP 403: rollouts.argoproj.io "model-server" is forbidden')
    assert clock.slept == []


# -- the command line --------------------------------------------------------------------------------

ARGS = ["--namespace", "model-serving", "--rollout", "model-server", "--timeout-s", "5", "--interval-s", "1"]


def test_the_command_passes_on_a_released_revision(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("release-healthy.yaml")) as api:
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(ARGS) == 0
    assert capsys.readouterr().out == "released: model-server revision 4 (6d4f9c8b7d) is fully promoted and Healthy\n"
    (runs,) = [r for r in api.requests if r["path"].endswith("/analysisruns")]
    assert runs["query"]["labelSelector"] == "rollouts-pod-template-hash=6d4f9c8b7d"


def test_the_command_fails_on_an_aborted_release_with_one_message_on_stderr(monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("release-aborted.yaml")) as api:
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(ARGS) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("release aborted: metric error-ratio failed: value [0.23]")
    assert captured.err.count("\n") == 1


def test_without_kubeconfig_json_it_says_what_it_needs(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECONFIG_JSON", raising=False)
    assert main(ARGS) == 1
    assert capsys.readouterr().err == ("release_wait: KUBECONFIG_JSON is not set: it must hold the cluster's "
                                       "kubeconfig as JSON (the stack's kubeconfig output)\n")


def test_an_unusable_kubeconfig_is_reported(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG_JSON", json.dumps({"apiVersion": "v1", "kind": "Config"}))
    assert main(ARGS) == 1
    assert capsys.readouterr().err.startswith("cannot follow the release: cannot use the kubeconfig: Invalid "
                                              "kube-config file. Expected key current-context")


def test_a_token_the_cluster_refuses_is_reported_with_where_it_comes_from(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with serve(recorded("release-healthy.yaml")) as api:
        api.answer = lambda *request: (401, {"kind": "Status", "code": 401,  # type: ignore[method-assign]
                                             "message": "Unauthorized"})
        monkeypatch.setenv("KUBECONFIG_JSON", api.kubeconfig())
        assert main(ARGS) == 1
    assert capsys.readouterr().err == ("cannot follow the release: reading rollout model-serving/model-server: "
                                       "HTTP 401: Unauthorized; does `aws eks get-token` work with these AWS "
                                       "credentials?\n")


def test_the_timeout_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--namespace", "model-serving", "--rollout", "model-server"])
    assert exit_.value.code == 2
    assert "the following arguments are required: --timeout-s" in capsys.readouterr().err
