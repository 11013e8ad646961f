"""Prometheus metrics shared by all worker processes.

prometheus_client's multiprocess mode keeps each process's values in files under one
directory, and /metrics in any worker adds them up. `prepare` chooses the directory in the
supervisor before workers start; a worker's `Metrics` sets the value class that writes there
itself, so prometheus_client need not be imported after `prepare`. It is imported here, with this
module, by the supervisor: the workers it forks share it instead of each importing it on the way to
its first answer.

Each worker writes its values into its own files in prometheus_client's format, read by its
MultiProcessCollector, so /metrics adds up every worker exactly as before and every update is in
the file the moment it is made. Only the writing is the worker's own (`WorkerValue`): its values
are written straight into the mapped file, without the lock and the process-id check (a system
call) that prometheus_client's value pays on every update, several times per request. A worker
is one thread that never forks, so neither is needed.
"""

from __future__ import annotations

import bisect
import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A predict call of a small model on a CPU takes a few hundred microseconds: finer at the bottom.
PREDICT_BUCKETS = (0.0001, 0.00025, *LATENCY_BUCKETS)
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


def worker_value_class() -> type:
    """A value class for prometheus_client's metrics in one single-threaded worker process: the
    same files, keys and layout as its multiprocess value (`prometheus_client.values.MultiProcessValue`),
    so its MultiProcessCollector and mark_process_dead read them as they would read its own."""
    directory = os.environ[MULTIPROC_ENV]
    pid = os.getpid()
    files: dict[str, MmapedDict] = {}

    class WorkerValue:
        _multiprocess = True

        def __init__(self, typ: str, metric_name: str, name: str, labelnames: list[str], labelvalues: list[str],
                     help_text: str, multiprocess_mode: str = "", **kwargs: object) -> None:
            prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
            file = files.get(prefix)
            if file is None:
                file = files[prefix] = MmapedDict(os.path.join(directory, f"{prefix}_{pid}.db"))
            key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            value, _ = file.read_value(key)  # adds the key to the file when it is new
            self._value: float = value
            # The value's two doubles (value, timestamp) in the mapping that holds them. A file that
            # grows is mapped anew for later keys; this mapping stays valid for this key.
            self._slots = memoryview(file._m).cast("d")  # private, but prometheus-client is pinned
            self._index = file._positions[key] // 8

        def inc(self, amount: float) -> None:
            self._value += amount
            self._slots[self._index] = self._value

        def set(self, value: float, timestamp: float | None = None) -> None:
            self._value = value
            self._slots[self._index] = value
            self._slots[self._index + 1] = timestamp or 0.0

        def set_exemplar(self, exemplar: object) -> None:
            return  # as prometheus_client's multiprocess values: no exemplars

        def get(self) -> float:
            return self._value

        def get_exemplar(self) -> None:
            return None

    return WorkerValue


class HistogramWriter:
    """Observes into a labelled prometheus_client histogram with one bisection instead of its loop
    over the buckets: the same sum and bucket counts, for the hot path."""

    def __init__(self, child: Any) -> None:
        self._bounds = list(child._upper_bounds)  # private, but prometheus-client is pinned
        self._sum = child._sum
        self._buckets = child._buckets

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        self._buckets[bisect.bisect_left(self._bounds, amount)].inc(1)

    def observe_many(self, amounts: list[float]) -> None:
        """Several at once (a batch's queue waits): one increment per bucket they fall in."""
        counts = [0] * len(self._buckets)
        bounds = self._bounds
        for amount in amounts:
            counts[bisect.bisect_left(bounds, amount)] += 1
        self._sum.inc(sum(amounts))
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class GaugeWriter:
    """Moves a prometheus_client gauge by one without its per-call checks, for the hot path."""

    def __init__(self, gauge: Any) -> None:
        value = gauge._value  # private, but prometheus-client is pinned
        self.inc = functools.partial(value.inc, 1)
        self.dec = functools.partial(value.inc, -1)


class Metrics:
    """The server's metrics; create one per worker process, after `prepare`."""

    def __init__(self, max_batch_size: int, model_name: str) -> None:
        if MULTIPROC_ENV in os.environ:
            values.ValueClass = worker_value_class()

        self.requests = Counter("model_server_requests_total", "Requests by endpoint and HTTP status",
                                ["endpoint", "status"])
        self.latency = Histogram("model_server_request_duration_seconds", "Time from request to response",
                                 ["endpoint"], buckets=LATENCY_BUCKETS)
        self.queue_wait = Histogram("model_server_queue_wait_seconds",
                                    "Time an inference request waited for its batch", buckets=LATENCY_BUCKETS)
        batch_buckets = tuple(float(2**i) for i in range(max_batch_size.bit_length() + 1))
        self.batch_rows = Histogram("model_server_batch_rows", "Rows per predict call", buckets=batch_buckets)
        self.predict_seconds = Histogram("model_server_predict_seconds",
                                         "Duration of each predict call (one per batch; retries counted)",
                                         ["model"], buckets=PREDICT_BUCKETS).labels(model_name)
        # Beside the wall time: what the calls cost the worker's CPU (the calling thread's time).
        self.predict_cpu = Counter("model_server_predict_cpu_seconds",
                                   "CPU time of the predict calls, in the worker's thread that made them",
                                   ["model"]).labels(model_name)
        self.inflight = GaugeWriter(Gauge("model_server_inflight_requests", "Requests being processed",
                                          multiprocess_mode="livesum"))
        self.load_seconds = Gauge("model_server_model_load_seconds", "Time to read, verify and deserialize the model",
                                  multiprocess_mode="max")
        self.model_info = Gauge("model_server_model_info", "The model being served, its runtime and its device",
                                ["name", "version", "sha256", "runtime", "device"], multiprocess_mode="max")
        self._request_children: dict[tuple[str, int], Any] = {}  # their values, incremented directly
        self._latency_children: dict[str, HistogramWriter] = {}
        self._queue_wait = HistogramWriter(self.queue_wait)
        self._batch_rows = HistogramWriter(self.batch_rows)
        self._predict_seconds = HistogramWriter(self.predict_seconds)
        # The inference answers a canary is judged by exist from the start, at 0: a 5xx then shows as a
        # rise in a series Prometheus already holds, one scrape sooner than a series that first appears
        # with it (rate() needs two samples), which shortens how long a bad release serves.
        for endpoint in INFERENCE_ENDPOINTS:
            for status in JUDGED_STATUSES:
                self._request_children[(endpoint, status)] = self.requests.labels(endpoint, str(status))._value

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        # Label lookups are cached: they cost more than the increment itself.
        key = (endpoint, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(endpoint, str(status))._value
        counter.inc(1)
        histogram = self._latency_children.get(endpoint)
        if histogram is None:
            histogram = self._latency_children[endpoint] = HistogramWriter(self.latency.labels(endpoint))
        histogram.observe(seconds)

    def observe_batch(self, rows: int, waits: list[float]) -> None:
        self._batch_rows.observe(rows)
        self._queue_wait.observe_many(waits)

    def observe_predict(self, seconds: float, cpu_seconds: float) -> None:
        self._predict_seconds.observe(seconds)
        self.predict_cpu.inc(cpu_seconds)

    @staticmethod
    def render() -> bytes:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    @staticmethod
    def process_exited(pid: int) -> None:
        multiprocess.mark_process_dead(pid)
