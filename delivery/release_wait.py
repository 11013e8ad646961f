"""Waits until a new model revision is released, and fails `pulumi up` when it is not.

    KUBECONFIG_JSON='<kubeconfig>' python -m delivery.release_wait \\
        --namespace model-serving --rollout model-server --timeout-s 1800 [--interval-s 5]

Run by `pulumi up` (a pulumi-command local.Command) after it applies a new Rollout spec, because
Pulumi's own await cannot judge an Argo Rollout: `pulumi.com/waitFor` never fails on Degraded
(https://github.com/pulumi/pulumi-kubernetes/issues/4428) and compares observedGeneration, which
Argo stores as a string, so a Healthy left from before the apply can pass.

Exit 0 when the controller has observed the applied generation and the Rollout is Healthy, not
aborted and fully promoted (stable pods = current pods). Exit 1, with one message on stderr, when
the release was aborted (naming the failed metric, its value and condition), is Degraded, is
paused in a way only a person can resolve, or did not finish within the timeout. A timed pause
step is progress. One line on stdout each time the step, weight or phase changes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from delivery.kube import HASH_LABEL, REVISION_ANNOTATION, KubeError, connect

Document = dict[str, Any]

README_HINT = 'see README "Releasing a model"'


class Outcome(Enum):
    RELEASED = "released"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str  # WAITING: where the release stands; otherwise what the operator reads


def _status(rollout: Document) -> Document:
    status: Document = rollout.get("status") or {}
    return status


def _steps(rollout: Document) -> list[Document]:
    steps: list[Document] = rollout["spec"]["strategy"]["canary"].get("steps") or []
    return steps


def _where(rollout: Document) -> str:
    """Where a release stands, as `kubectl argo rollouts get rollout` shows it (step 2/5 is index 2)."""
    status = _status(rollout)
    parts = []
    index, steps = status.get("currentStepIndex"), _steps(rollout)
    if index is not None and steps:
        parts.append(f"step {index}/{len(steps)}")
    weights = (status.get("canary") or {}).get("weights")
    if weights:
        parts.append(f"canary weight {weights['canary']['weight']}%")
    phase = f"phase {status.get('phase') or 'not set yet'}"
    parts.append(f"{phase}: {status['message']}" if status.get("message") else phase)
    return ", ".join(parts)


def _operator_choice(rollout: Document) -> str:
    name, namespace = rollout["metadata"]["name"], rollout["metadata"]["namespace"]
    return (f"it cannot resume by itself: run `kubectl argo rollouts promote {name} -n {namespace}` to go on, "
            f"or `kubectl argo rollouts abort {name} -n {namespace}` to put all traffic back on the stable revision")


def _runs_of_this_release(rollout: Document, analysis_runs: list[Document]) -> list[Document]:
    """The AnalysisRuns of the current pods at the current revision, oldest first.

    The pod hash alone is not enough: a template released, aborted and released again keeps its
    hash, and the first attempt's runs stay (the Rollout's unsuccessfulRunHistoryLimit). Argo
    names the revision in each run's annotations (newAnalysisRunFromRollout in
    https://github.com/argoproj/argo-rollouts/blob/v1.9.1/rollout/analysis.go).
    """
    uid = rollout["metadata"]["uid"]
    revision = rollout["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
    pod_hash = _status(rollout).get("currentPodHash")
    runs = [run for run in analysis_runs
            if any(owner.get("uid") == uid for owner in run["metadata"].get("ownerReferences", []))
            and run["metadata"].get("labels", {}).get(HASH_LABEL) == pod_hash
            and run["metadata"].get("annotations", {}).get(REVISION_ANNOTATION) == revision]
    return sorted(runs, key=lambda run: str(run["metadata"].get("creationTimestamp", "")))


def _last_measurement(result: Document) -> Document:
    phase = result.get("phase")
    matching = [m for m in result.get("measurements") or [] if m.get("phase") == phase]
    return matching[-1] if matching else {}


def _explain_metric(run: Document, result: Document) -> str:
    name, phase = result["name"], result.get("phase")
    measurement = _last_measurement(result)
    value = measurement.get("value", "none")
    where_from = f"(AnalysisRun {run['metadata']['name']})"
    if phase == "Error":
        detail = measurement.get("message") or result.get("message") or "no message"
        return f"metric {name} could not be measured: {detail} {where_from}"
    if phase == "Inconclusive":
        return f"metric {name} was inconclusive: value {value} {where_from}"
    conditions = {metric["name"]: metric.get("failureCondition") for metric in run.get("spec", {}).get("metrics", [])}
    condition = f' met failure condition "{conditions[name]}"' if conditions.get(name) else ""
    return f"metric {name} failed: value {value}{condition} {where_from}"


def _analysis_finding(rollout: Document, analysis_runs: list[Document], phases: set[str]) -> str | None:
    """The first metric of this release's AnalysisRuns that ended in one of `phases`, explained."""
    for run in _runs_of_this_release(rollout, analysis_runs):
        if (run.get("status") or {}).get("phase") not in phases:
            continue
        for result in run["status"].get("metricResults") or []:
            if result.get("phase") in phases and not result.get("dryRun"):
                return _explain_metric(run, result)
    return None


def _timed_pause_step(rollout: Document, condition: Document) -> bool:
    # A pause step without a duration pauses with the same reason, CanaryPauseStep, and waits for a
    # promote (completedCurrentCanaryStep): only the step tells them apart.
    # https://github.com/argoproj/argo-rollouts/blob/v1.9.1/rollout/canary.go
    index, steps = _status(rollout).get("currentStepIndex"), _steps(rollout)
    if condition.get("reason") != "CanaryPauseStep" or index is None or not 0 <= index < len(steps):
        return False
    return (steps[index].get("pause") or {}).get("duration") is not None


def _why_paused(rollout: Document, condition: Document, analysis_runs: list[Document]) -> str:
    reason = condition.get("reason")
    if reason == "CanaryPauseStep":
        return "a pause step without a duration waits for a person"
    if reason == "InconclusiveAnalysisRun":
        return _analysis_finding(rollout, analysis_runs, {"Inconclusive"}) or "an AnalysisRun was inconclusive"
    return f"paused for {reason}"


def assess(rollout: Document, analysis_runs: list[Document]) -> Verdict:
    """Whether the Rollout's latest spec is released, still on its way, or needs a person.

    Time plays no part: the caller owns the clock (and the timeout).
    """
    metadata, status = rollout["metadata"], _status(rollout)
    generation, observed = metadata["generation"], status.get("observedGeneration")
    # Argo writes observedGeneration as a string (RolloutStatus in
    # https://github.com/argoproj/argo-rollouts/blob/v1.9.1/pkg/apis/rollouts/v1alpha1/types.go);
    # until it equals metadata.generation, everything else in status describes the previous spec.
    if observed != str(generation):
        return Verdict(Outcome.WAITING, f"waiting for the Argo Rollouts controller to observe generation "
                                        f"{generation} (it has observed {observed or 'none'})")
    # An abort is final once the controller has reconciled it (phase Degraded, its message set); a
    # status.abort just written by `kubectl argo rollouts abort` waits for that.
    aborted = bool(status.get("abort"))
    if aborted and status.get("phase") == "Degraded":
        cause = (_analysis_finding(rollout, analysis_runs, {"Failed", "Error"})
                 or str(status.get("message")).rstrip("."))
        return Verdict(Outcome.FAILED,
                       f"release aborted: {cause}; traffic is back on the stable revision; {README_HINT}")
    if status.get("phase") == "Degraded":
        # Degraded, not aborted (InvalidSpec; a progress deadline without progressDeadlineAbort):
        # Argo leaves it there, and `kubectl argo rollouts status` treats it as the end
        # (https://github.com/argoproj/argo-rollouts/blob/v1.9.1/pkg/kubectl-argo-rollouts/cmd/status/status.go).
        name, namespace = metadata["name"], metadata["namespace"]
        return Verdict(Outcome.FAILED,
                       f"release failed: {_where(rollout)}; Argo will not go on by itself: fix the cause and deploy "
                       f"again; while a canary takes traffic, `make rollback STACK=<stack>` (or `kubectl argo rollouts "
                       f"abort {name} -n {namespace}`) puts all of it back on the stable revision; {README_HINT}")
    if rollout["spec"].get("paused"):
        return Verdict(Outcome.FAILED, f"release paused by hand (spec.paused) at {_where(rollout)}; "
                                       f"{_operator_choice(rollout)}")
    for condition in status.get("pauseConditions") or []:
        if not _timed_pause_step(rollout, condition):
            return Verdict(Outcome.FAILED,
                           f"release paused at {_where(rollout)}: {_why_paused(rollout, condition, analysis_runs)}; "
                           f"{_operator_choice(rollout)}")
    if not aborted and status.get("phase") == "Healthy" and status.get("stableRS") == status.get("currentPodHash"):
        revision = metadata["annotations"][REVISION_ANNOTATION]
        return Verdict(Outcome.RELEASED, f"released: {metadata['name']} revision {revision} "
                                         f"({status['currentPodHash']}) is fully promoted and Healthy")
    return Verdict(Outcome.WAITING, _where(rollout))


class RolloutSource(Protocol):
    namespace: str

    def rollout(self, name: str) -> Document: ...

    def analysis_runs(self, label_selector: str) -> list[Document]: ...


def _look(cluster: RolloutSource, name: str) -> Verdict:
    rollout = cluster.rollout(name)
    pod_hash = _status(rollout).get("currentPodHash")
    runs = cluster.analysis_runs(f"{HASH_LABEL}={pod_hash}") if pod_hash else []
    return assess(rollout, runs)


def _say(line: str) -> None:
    print(line, flush=True)  # pulumi shows a command's output as it comes: no block buffering


def wait_for_release(cluster: RolloutSource, name: str, timeout_s: float, interval_s: float,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                     progress: Callable[[str], None] = _say) -> Verdict:
    """Polls until `assess` decides, or the timeout passes; the cluster may fail to answer meanwhile."""
    deadline = clock() + timeout_s
    shown = ""
    while True:
        try:
            verdict = _look(cluster, name)
        except KubeError as error:
            if not error.retryable:
                return Verdict(Outcome.FAILED, f"cannot follow the release: {error}")
            verdict = Verdict(Outcome.WAITING, f"the cluster did not answer ({error}); asking again")
        if verdict.outcome is not Outcome.WAITING:
            return verdict
        if verdict.message != shown:
            progress(f"{name}: {verdict.message}")
            shown = verdict.message
        remaining = deadline - clock()
        if remaining <= 0:
            return Verdict(Outcome.FAILED,
                           f"release timed out after {timeout_s:g} s: {verdict.message}; Argo goes on without "
                           f"pulumi: follow it with `kubectl argo rollouts get rollout {name} -n {cluster.namespace}`,"
                           f" or `make rollback STACK=<stack>` to stop it; {README_HINT}")
        sleep(min(interval_s, remaining))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rollout", required=True)
    parser.add_argument("--timeout-s", type=float, required=True)
    parser.add_argument("--interval-s", type=float, default=5)
    options = parser.parse_args(argv)
    kubeconfig = os.environ.get("KUBECONFIG_JSON", "")
    if not kubeconfig.strip():
        print("release_wait: KUBECONFIG_JSON is not set: it must hold the cluster's kubeconfig as JSON "
              "(the stack's kubeconfig output)", file=sys.stderr)
        return 1
    try:
        with connect(kubeconfig, options.namespace) as cluster:
            verdict = wait_for_release(cluster, options.rollout, options.timeout_s, options.interval_s)
    except KubeError as error:
        verdict = Verdict(Outcome.FAILED, f"cannot follow the release: {error}")
    if verdict.outcome is Outcome.RELEASED:
        print(verdict.message)
        return 0
    print(verdict.message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
