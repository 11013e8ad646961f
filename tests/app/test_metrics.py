"""Metrics: each worker writes its own values, /metrics adds up every worker's exactly, and the
predict-duration metrics count every predict call."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model_server.batching import Batcher
from tests.support.server import start_server

ROW = [5.1, 3.5, 1.4, 0.2]


def sample(text: str, series: str) -> float:
    """The value of one series (name and labels as rendered) in a /metrics page; 0 when absent."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def total(text: str, name: str) -> float:
    """A metric's value summed over all its label sets."""
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_metrics_add_up_every_worker_exactly(tmp_path: Path) -> None:
    server = start_server(tmp_path, MODEL_WORKERS="2")
    requests = 300
    try:
        document = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [ROW]}]}
        with ThreadPoolExecutor(max_workers=16) as pool:  # one connection per request: both workers answer
            statuses = list(pool.map(lambda _: server.infer(document).status, range(requests)))
        assert statuses == [200] * requests
        bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [ROW[:3]]}]}
        assert server.infer(bad).status == 400
        # A worker counts a request just after writing its answer: the last may still be on its way.
        deadline = time.monotonic() + 5
        while True:
            text = server.request("GET", "/metrics").body.decode()
            counted = (sample(text, 'model_server_requests_total{endpoint="infer",status="200"}'),
                       sample(text, 'model_server_requests_total{endpoint="infer",status="400"}'))
            if counted == (requests, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sample(text, 'model_server_requests_total{endpoint="infer",status="200"}') == requests
        assert sample(text, 'model_server_requests_total{endpoint="infer",status="400"}') == 1
        assert sample(text, 'model_server_request_duration_seconds_count{endpoint="infer"}') == requests + 1
        assert sample(text, 'model_server_request_duration_seconds_bucket{endpoint="infer",le="+Inf"}') == requests + 1
        assert sample(text, "model_server_queue_wait_seconds_count") == requests
        assert sample(text, "model_server_inflight_requests") == 0
        # One predict call per batch, each observed once, its CPU time counted beside its duration.
        calls = sample(text, 'model_server_predict_seconds_count{model="iris"}')
        assert calls == sample(text, "model_server_batch_rows_count") and 1 <= calls <= requests
        assert sample(text, "model_server_batch_rows_sum") == requests
        assert sample(text, 'model_server_predict_seconds_bucket{le="+Inf",model="iris"}') == calls
        assert sample(text, 'model_server_predict_cpu_seconds_total{model="iris"}') > 0
        assert sample(text, 'model_server_predict_seconds_sum{model="iris"}') > 0
    finally:
        assert server.stop() == 0


def test_a_worker_value_stays_exact_when_its_file_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metrics file starts at 64 KiB and is mapped anew when its keys outgrow it: values made before
    and after that keep landing in the file."""
    from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess, values

    from model_server import metrics

    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", metrics.worker_value_class())
    counter = Counter("grows_total", "a counter with many label sets", ["key"], registry=None)
    children = [counter.labels(f"label-value-{i:05d}") for i in range(1500)]  # about 200 KiB of keys
    for i, child in enumerate(children):
        child.inc(i)
    children[0].inc(7)  # made before the file grew, written after
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    assert sample(text, 'grows_total{key="label-value-00000"}') == 7
    assert sample(text, 'grows_total{key="label-value-01499"}') == 1499
    assert total(text, "grows_total") == sum(range(1500)) + 7


class Flaky:
    """Refuses any batch holding a NaN, as scikit-learn does: the batcher then retries each request alone."""

    name = "flaky"

    def predict(self, inputs: dict[str, np.ndarray], outputs: frozenset[str]) -> dict[str, np.ndarray]:
        rows = inputs["x"]
        if np.isnan(rows).any():
            raise ValueError("Input contains NaN")
        return {name: rows[:, 0] for name in outputs}


def test_every_predict_call_is_timed_retries_and_failures_included() -> None:
    timed: list[tuple[float, float]] = []

    async def scenario() -> list[object]:
        batcher = Batcher(Flaky(), 8, 0.0, lambda rows, waits: None, asyncio.get_running_loop(),
                          lambda seconds, cpu: timed.append((seconds, cpu)))
        good = batcher.submit({"x": np.ones((1, 4))}, frozenset({"predict"}))
        bad = batcher.submit({"x": np.full((1, 4), np.nan)}, frozenset({"predict"}))
        return await asyncio.gather(good, bad, return_exceptions=True)

    results = asyncio.run(scenario())
    assert isinstance(results[1], Exception)
    assert len(timed) == 3  # the shared call that failed, then each request alone
    assert all(seconds >= 0 and cpu >= 0 for seconds, cpu in timed)


def test_the_hot_path_histogram_counts_as_prometheus_client_does() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from model_server.metrics import LATENCY_BUCKETS, HistogramWriter

    registry = CollectorRegistry()
    theirs = Histogram("theirs_seconds", "observed by prometheus_client", buckets=LATENCY_BUCKETS, registry=registry)
    ours = Histogram("ours_seconds", "observed by HistogramWriter", buckets=LATENCY_BUCKETS, registry=registry)
    writer = HistogramWriter(ours)
    amounts = [0.0, *LATENCY_BUCKETS, *(bound * 1.0001 for bound in LATENCY_BUCKETS), 1e9,
               *np.random.default_rng(1).exponential(0.01, 500)]
    for amount in amounts:
        theirs.observe(float(amount))
        writer.observe(float(amount))
    lines = [line for line in generate_latest(registry).decode().splitlines()
             if line.startswith("theirs_seconds") and "_created" not in line]
    ours_lines = set(generate_latest(registry).decode().splitlines())
    assert len(lines) == len(LATENCY_BUCKETS) + 3  # the buckets, +Inf, count and sum
    for line in lines:
        assert line.replace("theirs_seconds", "ours_seconds") in ours_lines, line


def test_a_batch_of_waits_counts_as_observing_them_one_by_one() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from model_server.metrics import LATENCY_BUCKETS, HistogramWriter

    registry = CollectorRegistry()
    one_by_one = Histogram("one_seconds", "observed one at a time", buckets=LATENCY_BUCKETS, registry=registry)
    at_once = Histogram("many_seconds", "observed per batch", buckets=LATENCY_BUCKETS, registry=registry)
    amounts = [0.0, *LATENCY_BUCKETS, *(bound * 1.0001 for bound in LATENCY_BUCKETS), 1e9,
               *(float(n) for n in np.random.default_rng(2).exponential(0.01, 500))]
    single, batched = HistogramWriter(one_by_one), HistogramWriter(at_once)
    for amount in amounts:
        single.observe(amount)
    for start in range(0, len(amounts), 17):  # batches of 17, the last one shorter
        batched.observe_many(amounts[start:start + 17])
    batched.observe_many([])  # an empty batch changes nothing

    def series(prefix: str) -> dict[str, float]:
        return {line.split(" ")[0].removeprefix(prefix): float(line.split(" ")[1])
                for line in generate_latest(registry).decode().splitlines()
                if line.startswith(prefix) and "_created" not in line}

    ones, many = series("one_seconds"), series("many_seconds")
    assert len(ones) == len(LATENCY_BUCKETS) + 3 and ones.keys() == many.keys()
    for name, value in ones.items():  # the same counts; the sum, added in another order, to rounding
        assert many[name] == pytest.approx(value, rel=1e-12), name
