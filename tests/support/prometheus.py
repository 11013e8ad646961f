"""Prometheus's own tools for tests: promtool (rule checks and unit tests) and the server itself.
Debian's `prometheus` package brings both; .ci/run installs it and sets REQUIRE_PROMETHEUS, so a
missing binary fails CI instead of skipping the tests.

Also: the scrape job prometheus-operator would generate for a PodMonitor, a fixed exporter for
series of components the tests cannot run, a Prometheus server on 127.0.0.1 and an evaluator of the
Argo Rollouts failure conditions the canary analysis uses."""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian package `prometheus`)"
        if os.environ.get("REQUIRE_PROMETHEUS"):
            pytest.fail(f"REQUIRE_PROMETHEUS is set but {message}")
        pytest.skip(message)
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, cwd=cwd)


def write_rules(groups: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_expressions(expressions: dict[str, str], directory: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no expression check of its own: each expression becomes a recording rule."""
    rules = [{"record": f"check:{re.sub(r'[^a-zA-Z0-9_]', '_', name)}", "expr": expr}
             for name, expr in expressions.items()]
    return promtool("check", "rules", str(write_rules([{"name": "expressions", "rules": rules}],
                                                      directory / "expressions.yaml")))


# -- a real Prometheus scraping real processes ----------------------------------------------------------

def _sanitized(label: str) -> str:
    """A Kubernetes label as Prometheus's service discovery names it (every invalid character '_')."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


@dataclass(frozen=True)
class Pod:
    """A process on 127.0.0.1 standing in for a pod: what Kubernetes service discovery would say of it."""

    name: str
    port: int
    labels: dict[str, str]
    namespace: str
    container: str
    port_name: str


def pod_monitor_job(pod_monitor: dict[str, Any], pods: list[Pod], scrape_interval: str | None = None,
                    ) -> dict[str, Any]:
    """The scrape job prometheus-operator generates for a PodMonitor's first endpoint, with the pods
    as static targets carrying the meta labels Kubernetes discovery would give them, and the
    operator's relabelling (pkg/prometheus/promcfg.go, generatePodMonitorConfig): pods selected by
    label, the named port kept, namespace/container/pod, the podTargetLabels, job and endpoint.
    `scrape_interval` overrides the endpoint's (tests use 1s to see a minute's window fill fast)."""
    metadata, spec = pod_monitor["metadata"], pod_monitor["spec"]
    endpoint = spec["podMetricsEndpoints"][0]
    relabel: list[dict[str, Any]] = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
                                     {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)",
                                      "action": "drop"}]
    for label, value in spec["selector"]["matchLabels"].items():
        relabel.append({"source_labels": [f"__meta_kubernetes_pod_label_{_sanitized(label)}",
                                          f"__meta_kubernetes_pod_labelpresent_{_sanitized(label)}"],
                        "regex": f"({value});true", "action": "keep"})
    relabel += [{"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": endpoint["port"],
                 "action": "keep"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]
    relabel += [{"source_labels": [f"__meta_kubernetes_pod_label_{_sanitized(label)}"],
                 "target_label": _sanitized(label), "regex": "(.+)", "replacement": "${1}"}
                for label in spec.get("podTargetLabels", [])]
    relabel += [{"target_label": "job", "replacement": f"{metadata['namespace']}/{metadata['name']}"},
                {"target_label": "endpoint", "replacement": endpoint["port"]}]
    targets = []
    for pod in pods:
        meta = {"__meta_kubernetes_namespace": pod.namespace, "__meta_kubernetes_pod_name": pod.name,
                "__meta_kubernetes_pod_container_name": pod.container,
                "__meta_kubernetes_pod_container_port_name": pod.port_name, "__meta_kubernetes_pod_phase": "Running"}
        for label, value in pod.labels.items():
            meta[f"__meta_kubernetes_pod_label_{_sanitized(label)}"] = value
            meta[f"__meta_kubernetes_pod_labelpresent_{_sanitized(label)}"] = "true"
        targets.append({"targets": [f"127.0.0.1:{pod.port}"], "labels": meta})
    return {"job_name": f"podMonitor/{metadata['namespace']}/{metadata['name']}/0",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "scrape_interval": scrape_interval or endpoint["interval"],
            "metrics_path": endpoint.get("path", "/metrics"),
            "static_configs": targets, "relabel_configs": relabel}


class FixedExporter(AbstractContextManager["FixedExporter"]):
    """An HTTP server on 127.0.0.1 (a free port) answering every GET with one fixed text
    exposition: the series of an exporter the tests cannot run (Argo Rollouts, kube-state-metrics)."""

    def __init__(self, exposition: str) -> None:
        body = exposition.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # one line per scrape would bury the test's output

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class Prometheus(AbstractContextManager["Prometheus"]):
    """A real Prometheus on 127.0.0.1 with these scrape jobs (and rule groups, evaluated at the scrape
    interval); ready once every target has been scraped, stopped when the `with` block ends (and by
    itself when it does not get ready)."""

    def __init__(self, directory: Path, jobs: list[dict[str, Any]], scrape_interval: str = "15s",
                 ready_within_s: float = 60, rule_groups: list[dict[str, Any]] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.targets = sum(len(group["targets"]) for job in jobs for group in job["static_configs"])
        config: dict[str, Any] = {"global": {"scrape_interval": scrape_interval,
                                             "evaluation_interval": scrape_interval},
                                  "scrape_configs": jobs}
        if rule_groups is not None:
            write_rules(rule_groups, directory / "rules.yaml")
            config["rule_files"] = ["rules.yaml"]
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = directory / "prometheus.log"
        self.port = 0
        # Port 0: Prometheus binds a free port itself and logs which one, so no port is picked in
        # advance (where another process could take it between the pick and the bind).
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}", "--web.listen-address=127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=log)
        try:
            self._wait_until_scraped(ready_within_s)
        except BaseException:
            self.stop()
            raise

    def _wait_until_scraped(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if not self.port:
                found = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', self.log_path.read_text())
                self.port = int(found[1]) if found else 0
            try:
                if self.port and self.values("count(up == 1)") == [self.targets]:
                    return
            except OSError:
                pass  # its web server answers a moment after it logs the port
            time.sleep(0.1)
        raise RuntimeError(f"Prometheus (exit code {self.process.poll()}) did not scrape all {self.targets} "
                           f"targets:\n{self.log_path.read_text()}")

    def _get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector, now or as of `at` (Unix seconds): what an Argo measurement or a
        KEDA poll at that moment would get. A query Prometheus rejects raises."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self._get("query", **params)
        if data["resultType"] != "vector":
            raise ValueError(f"{expr} gives a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, at: float | None = None) -> list[float]:
        """The query's sample values, in order: Argo's `result` for a vector (NaN stays NaN)."""
        return [float(sample["value"][1]) for sample in self.query(expr, at)]

    def series_labels(self, match: str) -> dict[str, set[str]]:
        """Metric name → every label name its stored series carry (server labels and target labels)."""
        labels: dict[str, set[str]] = {}
        for series in self._get("series", **{"match[]": match}):
            labels.setdefault(series["__name__"], set()).update(set(series) - {"__name__"})
        return labels

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names) for each series selector in a PromQL expression: the labels it
    matches on, and those an enclosing `by (...)` groups on."""
    found: list[tuple[str, set[str]]] = []
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr):
        labels = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", match[2]))
        found.append((match[1], labels | _grouped_on(expr, match.start())))
    return found


def _grouped_on(expr: str, position: int) -> set[str]:
    """The labels of every `by (...)` aggregation whose argument contains `position`."""
    labels: set[str] = set()
    for grouping in re.finditer(r"\bby\s*\(([^)]*)\)\s*\(", expr):
        depth, end = 1, grouping.end()
        while depth and end < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        if grouping.end() <= position < end:
            labels |= {label.strip() for label in grouping[1].split(",") if label.strip()}
    return labels


# -- Argo Rollouts' failure conditions, for exactly the shapes infra/workload/analysis.py writes --------

class MeasurementError(Exception):
    """The condition cannot be evaluated on this result (Argo: the measurement is an Error)."""


_TERMS: dict[str, Callable[[list[float], float], bool]] = {
    r"len\(result\) > (?P<number>\d+)": lambda result, number: len(result) > number,
    r"!isNaN\(result\[0\]\)": lambda result, _: not math.isnan(_first(result)),
    r"result\[0\] > (?P<number>[-+0-9.e]+)": lambda result, number: _first(result) > number,
    r"result\[0\] < (?P<number>[-+0-9.e]+)": lambda result, number: _first(result) < number,
}


def _first(result: list[float]) -> float:
    if not result:
        raise MeasurementError("result[0] of an empty result")
    return result[0]


Term = tuple[str, Callable[[list[float], float], bool], float]  # its text, its test, its number


def _terms(condition: str) -> list[Term]:
    terms: list[Term] = []
    for text in condition.split(" && "):
        for pattern, test in _TERMS.items():
            found = re.fullmatch(pattern, text.strip())
            if found:
                terms.append((text.strip(), test, float(found.groupdict().get("number", "nan"))))
                break
        else:
            raise ValueError(f"{text!r} in {condition!r} is not a term this evaluator knows")
    return terms


def condition_holds(condition: str, result: list[float]) -> bool:
    """Argo's evaluation of a failureCondition on a Prometheus vector's values: `&&` evaluated left
    to right and stopping at the first false term (so a length guard protects `result[0]`), NaN
    never greater or less than anything; indexing an empty result is an Error, raised."""
    return all(test(result, number) for _, test, number in _terms(condition))


def condition_bound(condition: str) -> float:
    """The number the condition compares result[0] with (its threshold)."""
    bounds = [number for text, _, number in _terms(condition) if text.startswith("result[0]")]
    if len(bounds) != 1:
        raise ValueError(f"{condition!r} does not compare result[0] with exactly one number")
    return bounds[0]
