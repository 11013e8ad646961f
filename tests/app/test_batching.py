"""Concurrent requests share predict calls, and each caller gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_server.batching import Batcher
from model_server.errors import BadRequest, ServerError
from tests.support.server import start_server


class RecordingModel:
    """Echoes each row's first feature, so a caller can tell its rows from anyone else's."""

    name = "echo"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, inputs: dict[str, np.ndarray], outputs: frozenset[str]) -> dict[str, np.ndarray]:
        rows = inputs["x"]
        self.calls.append(len(rows))
        if np.isnan(rows).any():
            raise ValueError("Input contains NaN")
        return {name: rows[:, 0] * (2 if name == "double" else 1) for name in outputs}


def run_batcher(requests: list[tuple[dict[str, np.ndarray], frozenset[str]]], max_batch: int = 8,
                wait_s: float = 0.0) -> tuple[RecordingModel, list[Any], list[tuple[int, list[float]]]]:
    model = RecordingModel()
    observed: list[tuple[int, list[float]]] = []

    async def scenario() -> list[Any]:
        batcher = Batcher(model, max_batch, wait_s, lambda rows, waits: observed.append((rows, waits)),
                          asyncio.get_running_loop())
        futures = [batcher.submit(rows, outputs) for rows, outputs in requests]
        return await asyncio.gather(*futures, return_exceptions=True)

    return model, asyncio.run(scenario()), observed


def rows_of(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v, 0, 0, 0] for v in values], dtype=float)}


def test_requests_arriving_together_share_one_predict_and_get_their_own_rows() -> None:
    requests = [(rows_of(i, i + 0.5), frozenset({"predict"})) for i in range(3)]
    model, results, observed = run_batcher(requests)
    assert model.calls == [6]
    assert observed[0][0] == 6 and len(observed[0][1]) == 3
    for i, result in enumerate(results):
        assert result["predict"].tolist() == [i, i + 0.5]


def test_batches_never_exceed_the_maximum_and_a_bigger_request_goes_alone() -> None:
    requests = [(rows_of(*range(3)), frozenset({"predict"})) for _ in range(5)]
    requests.append((rows_of(*range(20)), frozenset({"predict"})))
    model, results, _ = run_batcher(requests, max_batch=8)
    assert model.calls == [6, 6, 3, 20]
    assert results[-1]["predict"].tolist() == list(range(20))


def test_each_caller_gets_only_the_outputs_it_asked_for() -> None:
    requests = [(rows_of(1), frozenset({"predict"})), (rows_of(2), frozenset({"double"}))]
    _, results, _ = run_batcher(requests)
    assert results[0].keys() == {"predict"} and results[1].keys() == {"double"}
    assert results[1]["double"].tolist() == [4]


def test_a_bad_request_fails_alone() -> None:
    requests = [(rows_of(1), frozenset({"predict"})), (rows_of(float("nan")), frozenset({"predict"})),
                (rows_of(3), frozenset({"predict"}))]
    model, results, _ = run_batcher(requests)
    assert results[0]["predict"].tolist() == [1] and results[2]["predict"].tolist() == [3]
    assert isinstance(results[1], BadRequest) and "Input contains NaN" in results[1].message
    assert model.calls[0] == 3  # tried together first


def test_a_failure_outside_the_model_still_answers_every_caller() -> None:
    """A failing batch observer (metrics) or results the model returns without an asked-for output
    must not leave requests waiting forever."""

    def failing_observer(rows: int, waits: list[float]) -> None:
        raise RuntimeError("metrics backend down")

    async def scenario(observe: Any, model: RecordingModel) -> list[Any]:
        batcher = Batcher(model, 8, 0.0, observe, asyncio.get_running_loop())
        futures = [batcher.submit(rows_of(i), frozenset({"predict"})) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout=5)

    results = asyncio.run(scenario(failing_observer, RecordingModel()))
    assert all(isinstance(r, ServerError) and "failed: RuntimeError" in r.message for r in results)

    class ForgetfulModel(RecordingModel):
        def predict(self, inputs: dict[str, np.ndarray], outputs: frozenset[str]) -> dict[str, np.ndarray]:
            return {}  # none of the outputs asked for

    results = asyncio.run(scenario(lambda rows, waits: None, ForgetfulModel()))
    assert all(isinstance(r, ServerError) and "failed: KeyError" in r.message for r in results)


def test_a_full_batch_flushes_at_once_even_with_a_wait_window() -> None:
    model = RecordingModel()

    async def scenario() -> list[Any]:
        # An hour's window: were the full batch to wait for it, wait_for would time out.
        batcher = Batcher(model, 4, 3600.0, lambda rows, waits: None, asyncio.get_running_loop())
        return await asyncio.wait_for(asyncio.gather(
            *[batcher.submit(rows_of(i), frozenset({"predict"})) for i in range(4)]), timeout=5)

    results = asyncio.run(scenario())
    assert model.calls == [4]
    assert [r["predict"].tolist() for r in results] == [[0], [1], [2], [3]]


def test_waiting_gathers_requests_submitted_later() -> None:
    model = RecordingModel()

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, 64, 0.05, lambda rows, waits: None, loop)
        first = batcher.submit(rows_of(1), frozenset({"predict"}))
        await asyncio.sleep(0.01)
        second = batcher.submit(rows_of(2), frozenset({"predict"}))
        return await asyncio.gather(first, second)

    results = asyncio.run(scenario())
    assert model.calls == [2]
    assert [r["predict"].tolist() for r in results] == [[1], [2]]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_concurrent_http_clients_each_get_exactly_their_rows(tmp_path: Path, model: Any, workers: str) -> None:
    server = start_server(tmp_path, MODEL_WORKERS=workers, MODEL_MAX_BATCH_WAIT_MS="5", MODEL_MAX_BATCH_SIZE="32")
    generator = np.random.default_rng(3)
    inputs = [generator.uniform(0, 8, size=(int(generator.integers(1, 4)), 4)) for _ in range(240)]

    def call(index: int) -> tuple[int, dict[str, Any]]:
        document = {"id": str(index), "inputs": [{"name": "x", "shape": list(inputs[index].shape),
                                                  "datatype": "FP64", "data": inputs[index].tolist()}]}
        return index, server.infer(document).json()

    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(call, range(len(inputs))))
        for index, body in answers:
            assert body["id"] == str(index)
            outputs = {o["name"]: o for o in body["outputs"]}
            np.testing.assert_allclose(np.array(outputs["predict_proba"]["data"]).reshape(-1, 3),
                                       model.predict_proba(inputs[index]))
            assert outputs["predict"]["data"] == model.predict(inputs[index]).tolist()
        metrics = server.request("GET", "/metrics").body.decode()
        calls = float(re.search(r"^model_server_batch_rows_count ([\d.]+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
        assert calls < len(inputs), "requests were not batched"
    finally:
        assert server.stop() == 0


def test_a_model_failing_otherwise_than_rejecting_input_is_a_server_error_for_that_request_alone() -> None:
    class Fragile(RecordingModel):
        def predict(self, inputs: dict[str, np.ndarray], outputs: frozenset[str]) -> dict[str, np.ndarray]:
            if (inputs["x"][:, 0] == 13).any():
                raise RuntimeError("model bug")
            return super().predict(inputs, outputs)

    async def scenario() -> list[Any]:
        batcher = Batcher(Fragile(), 8, 0.0, lambda rows, waits: None, asyncio.get_running_loop())
        futures = [batcher.submit(rows_of(value), frozenset({"predict"})) for value in (1, 13, 3)]
        return await asyncio.gather(*futures, return_exceptions=True)

    first, failed, third = asyncio.run(scenario())
    assert first["predict"].tolist() == [1] and third["predict"].tolist() == [3]
    assert type(failed) is ServerError and failed.status == 500
    assert failed.message == "model 'echo' failed: RuntimeError"


def test_a_rejected_input_names_the_field_and_the_models_reason() -> None:
    _, results, _ = run_batcher([(rows_of(float("nan")), frozenset({"predict"}))])
    assert results[0].message == "inputs[0].data: model 'echo' rejected it: Input contains NaN"


def test_requests_that_exactly_fill_a_batch_share_it() -> None:
    model, _, observed = run_batcher([(rows_of(*range(4)), frozenset({"predict"}))] * 2, max_batch=8)
    assert model.calls == [8] and observed[0][0] == 8


def test_after_a_full_batch_the_next_request_waits_its_own_whole_window() -> None:
    """The window is counted from each batch's first request: a full batch cancels the timer of
    the requests it took, and counts their rows out, so a request after it is neither flushed
    early by that stale timer nor taken for part of a full batch."""
    model = RecordingModel()
    observed: list[tuple[int, list[float]]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model, 2, 0.4, lambda rows, waits: observed.append((rows, waits)), loop)
        submitted = time.perf_counter()
        full = [batcher.submit(rows_of(value), frozenset({"predict"})) for value in (1, 2)]  # arms a 0.4 s timer
        await asyncio.gather(*full)
        await asyncio.sleep(0.1)
        later = batcher.submit(rows_of(3), frozenset({"predict"}))  # its window ends 0.4 s from now
        await asyncio.sleep(0.35)  # past where the first timer would have fired, not this window's end
        assert not later.done() and model.calls == [2]
        assert (await later)["predict"].tolist() == [3]
        # Queue waits are measured from submission: none is negative or longer than the test.
        assert all(0 <= wait <= time.perf_counter() - submitted for _, waits in observed for wait in waits)

    asyncio.run(scenario())
    assert model.calls == [2, 1] and [rows for rows, _ in observed] == [2, 1]


def test_a_batch_short_of_full_waits_for_its_window() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        batcher = Batcher(model, 4, 3600.0, lambda rows, waits: None, asyncio.get_running_loop())
        waiting = batcher.submit(rows_of(1, 2, 3), frozenset({"predict"}))  # 3 of 4 rows
        await asyncio.sleep(0.05)
        assert not waiting.done() and model.calls == []
        waiting.cancel()

    asyncio.run(scenario())
