"""Prometheus metrics shared by all worker processes.

prometheus_client's multiprocess mode keeps each process's values in files under one
directory, and /metrics in any worker adds them up. The directory must be chosen before
prometheus_client is imported, so `prepare` runs in the supervisor before workers start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INFERENCE_ENDPOINTS = ("infer", "v1_predict")
JUDGED_STATUSES = (200, 400, 500)


def prepare(directory: Path | None) -> Path:
    """Create a clean metrics directory and point prometheus_client at it. By default it is
    in /dev/shm, which container runtimes mount writable even on a read-only root."""
    shared_memory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = directory or Path(tempfile.mkdtemp(prefix="model-server-metrics-", dir=shared_memory))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


class Metrics:
    """The server's metrics; create one per worker process, after `prepare`."""

    def __init__(self, max_batch_size: int) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("model_server_requests_total", "Requests by endpoint and HTTP status",
                                ["endpoint", "status"])
        self.latency = Histogram("model_server_request_duration_seconds", "Time from request to response",
                                 ["endpoint"], buckets=LATENCY_BUCKETS)
        self.queue_wait = Histogram("model_server_queue_wait_seconds",
                                    "Time an inference request waited for its batch", buckets=LATENCY_BUCKETS)
        batch_buckets = tuple(float(2**i) for i in range(max_batch_size.bit_length() + 1))
        self.batch_rows = Histogram("model_server_batch_rows", "Rows per predict call", buckets=batch_buckets)
        self.inflight = Gauge("model_server_inflight_requests", "Requests being processed",
                              multiprocess_mode="livesum")
        self.load_seconds = Gauge("model_server_model_load_seconds", "Time to read, verify and deserialize the model",
                                  multiprocess_mode="max")
        self.model_info = Gauge("model_server_model_info", "The model being served, its runtime and its device",
                                ["name", "version", "sha256", "runtime", "device"], multiprocess_mode="max")
        self._request_children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        # The inference answers a canary is judged by exist from the start, at 0: a 5xx then shows as a
        # rise in a series Prometheus already holds, one scrape sooner than a series that first appears
        # with it (rate() needs two samples), which shortens how long a bad release serves.
        for endpoint in INFERENCE_ENDPOINTS:
            for status in JUDGED_STATUSES:
                self._request_children[(endpoint, status)] = self.requests.labels(endpoint, str(status))

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        # Label lookups are cached: they cost more than the increment itself.
        key = (endpoint, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(endpoint, str(status))
        counter.inc()
        histogram = self._latency_children.get(endpoint)
        if histogram is None:
            histogram = self._latency_children[endpoint] = self.latency.labels(endpoint)
        histogram.observe(seconds)

    def observe_batch(self, rows: int, waits: list[float]) -> None:
        self.batch_rows.observe(rows)
        for wait in waits:
            self.queue_wait.observe(wait)

    @staticmethod
    def render() -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    @staticmethod
    def process_exited(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
