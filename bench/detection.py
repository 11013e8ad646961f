"""Benchmark: how long a faulty canary serves before the canary analysis would abort it.

    python bench/detection.py [--runs 5] [--seed N] [--json bench/detection.json]

A real Prometheus scrapes a stable model server (the trained model) and a canary serving a
genuinely faulty artifact (tests/support/faulty_models.py's overflowing_model: most valid rows end
in a 500) exactly as it would in the cluster: the scrape job prometheus-operator generates for the
project's PodMonitor, at its interval (model_monitoring.SCRAPE_INTERVAL, 15 s). Valid traffic goes
to both. As Argo Rollouts would, the error-ratio measurement of the canary-health analysis is taken
every analysisIntervalSeconds (10 s by default), starting at a random phase, and judged by its
failureCondition with failureLimit 0 (the first failed measurement aborts). Each run measures the
time from the first 500 a client receives to the measurement that fails; each run has fresh
processes and starts its traffic at a random point of the scrape cycle. Takes a few minutes.

What sets the figure, and what each setting trades:
- the scrape interval: the first error shows up at the next scrape (0 to 15 s later). The server
  exports its inference answers' series at 0 from the start (app/model_server/metrics.py), so that
  sample already makes rate() rise; a series that first appeared with the error would need a second
  sample (another 15 s). A shorter interval detects sooner at the cost of more samples to store;
- the analysis interval: the measurement after that (0 to 10 s). Shorter, more queries;
- the rate window (queries.ANALYSIS_WINDOW, 1m): it must hold two scrapes; a longer one dilutes a
  burst of errors among more requests, so a brief burst may stay under maxErrorRatio;
- failureLimit: each measurement tolerated adds an analysis interval to the detection time, and
  spares a release one unlucky window (a false abort).
Expected with the defaults: 0 to 25 s (measured: bench/detection.json; README, "Releasing a model").

Measured here: Prometheus and the analysis query. The load balancer's weight change after the
abort (the canary's share set to 0) can only be measured on AWS, against a real ALB.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# As pytest's pythonpath does: the project's packages, and app/ for the server's training code.
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from infra.identity import StackIdentity  # noqa: E402
from infra.observability import queries  # noqa: E402
from infra.observability.model_monitoring import REVISION_POD_LABEL, SCRAPE_INTERVAL, model_pod_monitor  # noqa: E402
from infra.settings.models import CanarySettings, ObservabilitySettings  # noqa: E402
from infra.workload import analysis  # noqa: E402
from infra.workload.contract import APP_NAME, NAMESPACE, PORT_NAME, pod_labels  # noqa: E402
from tests.support.faulty_models import Traffic, overflowing_model  # noqa: E402
from tests.support.prometheus import Pod, Prometheus, condition_holds, pod_monitor_job  # noqa: E402
from tests.support.server import start_server, write_model  # noqa: E402

IDENTITY = StackIdentity(name="dev", project="model-serving", tags={}, partition="aws", region="eu-west-1",
                         production=False)
CANARY = CanarySettings()
MEASURE = next(measure for measure in analysis.health_measures(CANARY, ObservabilitySettings())
               if measure.name == "error-ratio")
HASHES = {"stable": "6d8f9b7c5d", "canary": "7c9d8b6f4a"}
GIVE_UP_AFTER_S = 120


@dataclass
class Run:
    detected_after_s: float  # from the first 500 received to the measurement that aborts
    measurements: int  # taken after the first 500, the aborting one included
    error_ratio: float  # what the aborting measurement read


def seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def one_run(directory: Path, rng: random.Random) -> Run:
    stable = start_server(directory, *write_model(directory, "trained.pkl"))
    canary = start_server(directory, *overflowing_model(directory))
    try:
        pods = [Pod(f"{APP_NAME}-{HASHES[name]}-0", server.port, {**pod_labels(IDENTITY), REVISION_POD_LABEL:
                                                                   HASHES[name]}, NAMESPACE, APP_NAME, PORT_NAME)
                for name, server in (("stable", stable), ("canary", canary))]
        # The PodMonitor's own interval: nothing overridden.
        with Prometheus(directory / "prometheus", [pod_monitor_job(model_pod_monitor(IDENTITY), pods)],
                        ready_within_s=3 * seconds(SCRAPE_INTERVAL)) as prometheus:
            # The canary's pod has been scraped; its traffic starts anywhere in the scrape cycle.
            time.sleep(rng.uniform(0, seconds(SCRAPE_INTERVAL)))
            query = MEASURE.query.replace(f"{{{{args.{analysis.CANARY_HASH_ARG}}}}}", HASHES["canary"])
            with Traffic({"stable": [stable.port], "canary": [canary.port]}) as traffic:
                started = time.monotonic()
                # Argo's measurements: every analysis interval from a phase the traffic does not know.
                due = started + rng.uniform(0, CANARY.analysis_interval_seconds)
                taken = failed = 0
                while time.monotonic() < started + GIVE_UP_AFTER_S:
                    time.sleep(max(0.0, due - time.monotonic()))
                    result = prometheus.values(query)
                    first_error = traffic.first_answered.get(("canary", 500))
                    taken += first_error is not None
                    failed += condition_holds(MEASURE.failure_condition, result)
                    if failed > CANARY.failure_limit:  # Argo: more failed measurements than the limit
                        if first_error is None:
                            raise RuntimeError(f"the canary failed before it answered any 500: {result}")
                        return Run(round(due - first_error, 1), taken, round(result[0], 3))
                    due += CANARY.analysis_interval_seconds
        raise RuntimeError(f"the error-ratio condition never held within {GIVE_UP_AFTER_S} s")
    finally:
        stable.stop()
        canary.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="for the random phases (default: unseeded)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    if shutil.which("prometheus") is None:
        sys.exit("prometheus is not installed (Debian package `prometheus`)")
    rng = random.Random(options.seed)
    runs = []
    for index in range(options.runs):
        with tempfile.TemporaryDirectory(prefix="detection-") as directory:
            runs.append(one_run(Path(directory), rng))
        print(f"run {index + 1}/{options.runs}: {runs[-1].detected_after_s} s", file=sys.stderr)
    detected = [run.detected_after_s for run in runs]
    figures = {
        "benchmark": "canary error-ratio detection",
        "settings": {"scrape_interval_s": seconds(SCRAPE_INTERVAL),
                     "analysis_interval_s": CANARY.analysis_interval_seconds,
                     "rate_window": queries.ANALYSIS_WINDOW, "failure_limit": CANARY.failure_limit,
                     "max_error_ratio": CANARY.max_error_ratio},
        "detection_s": {"min": min(detected), "median": statistics.median(detected), "max": max(detected)},
        "target_s": 30,
        "runs": [asdict(run) for run in runs],
    }
    print(json.dumps(figures))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
