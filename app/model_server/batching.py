"""Adaptive micro-batching: requests that arrive together share one predict call.

Requests parsed in the same event-loop iteration are flushed together at the end of it
(no added latency); with MODEL_MAX_BATCH_WAIT_MS > 0 a request may wait that long for
company. A full batch flushes at once. Each input is concatenated across the requests of a
batch (rows are every tensor's first dimension), and each caller gets exactly its own rows of
every output back.

A prediction that is NaN or infinite is never a 200 (whose JSON would turn the values into nulls,
and whose binary output would hand them on as numbers). It is the model's fault, a 500 naming the
output, unless the caller itself sent NaN or infinities that the model does not handle: a 400.
Each caller's own rows are checked, so one request that drives the model out of its range fails
alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model_server.errors import BadRequest, ServerError
from model_server.runtimes.base import Inputs


class Predictor(Protocol):
    """What the batcher needs of a model (model.Model is one)."""

    name: str

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]: ...


@dataclass(slots=True)
class _Pending:
    inputs: Inputs
    rows: int
    outputs: frozenset[str]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


# Called after each predict with (rows in the batch, seconds each request waited).
BatchObserver = Callable[[int, list[float]], None]
# Called after every predict call, failed ones and retries included, with its wall-clock seconds and the
# CPU seconds of the calling thread (time.thread_time: a library's own threads are not the server's).
PredictObserver = Callable[[float, float], None]


def finite(values: np.ndarray) -> bool:
    """No NaN or infinity (integer and other non-float arrays cannot hold them)."""
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())


class Batcher:
    def __init__(self, model: Predictor, max_batch_size: int, max_wait_s: float, observe: BatchObserver,
                 loop: asyncio.AbstractEventLoop, observe_predict: PredictObserver | None = None) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.observe = observe
        self.observe_predict = observe_predict
        self.loop = loop
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None

    def submit(self, inputs: Inputs, outputs: frozenset[str]) -> asyncio.Future[dict[str, np.ndarray]]:
        future: asyncio.Future[dict[str, np.ndarray]] = self.loop.create_future()
        rows = len(next(iter(inputs.values())))
        self._pending.append(_Pending(inputs, rows, outputs, future))
        self._pending_rows += rows
        if self._pending_rows >= self.max_batch_size:
            self._reschedule(self.loop.call_soon(self._flush))
        elif self._scheduled is None:
            self._reschedule(self.loop.call_later(self.max_wait_s, self._flush) if self.max_wait_s
                             else self.loop.call_soon(self._flush))
        return future

    def _reschedule(self, handle: asyncio.Handle | asyncio.TimerHandle) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
        self._scheduled = handle

    def _take_batch(self) -> list[_Pending]:
        """Whole requests, in arrival order, up to max_batch_size rows (a bigger request goes alone)."""
        batch: list[_Pending] = []
        rows = 0
        while self._pending and (not batch or rows + self._pending[0].rows <= self.max_batch_size):
            item = self._pending.popleft()
            batch.append(item)
            rows += item.rows
        self._pending_rows -= rows
        return batch

    def _flush(self) -> None:
        self._scheduled = None
        batch = [item for item in self._take_batch() if not item.future.cancelled()]
        if self._pending:
            self._reschedule(self.loop.call_soon(self._flush))
        if not batch:
            return
        try:
            self._run(batch)
        except Exception as error:
            # Whatever failed outside the model (metrics, splitting its results), no caller may
            # wait forever: every request still waiting gets an answer.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ServerError(f"model '{self.model.name}' failed: {type(error).__name__}"))

    def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        self.observe(sum(item.rows for item in batch), [started - item.enqueued for item in batch])
        if len(batch) == 1:  # alone: its outputs are all its own, whatever their shapes
            self._predict_alone(batch[0])
            return
        inputs = {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}
        outputs = frozenset().union(*(item.outputs for item in batch))
        try:
            results = self._call_model(inputs, outputs)
        except Exception:
            # One bad request must not fail its neighbours: retry each alone to find it.
            for item in batch:
                self._predict_alone(item)
            return
        # Checked once for the whole batch; only a batch with a non-finite value is checked per caller.
        all_finite = all(map(finite, results.values()))
        offset = 0
        for item in batch:
            end = offset + item.rows
            own = {name: results[name][offset:end] for name in item.outputs}
            if all_finite:
                item.future.set_result(own)
            else:
                self._answer(item, own)
            offset = end

    def _answer(self, item: _Pending, results: dict[str, np.ndarray]) -> None:
        for name, values in results.items():
            if not finite(values):
                item.future.set_exception(self._non_finite(item, name))
                return
        item.future.set_result(results)

    def _non_finite(self, item: _Pending, output: str) -> Exception:
        """The model's fault, unless the caller sent NaN or infinities (which a runtime that lets them
        through, as missing values, must pass on) and the model does not handle them."""
        sent = [name for name, values in item.inputs.items() if not finite(values)]
        if sent:
            return BadRequest(f"inputs: {', '.join(sent)} contain{'s' if len(sent) == 1 else ''} NaN or infinite "
                              f"values, and model '{self.model.name}' predicts NaN or infinite values for them "
                              f"(output '{output}'): it does not handle missing values; send finite numbers")
        return ServerError(f"model '{self.model.name}' predicted NaN or infinite values in output '{output}': a "
                           "fault of the model on these inputs, not of the request")

    def _call_model(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        observe = self.observe_predict
        if observe is None:
            return self.model.predict(inputs, outputs)
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return self.model.predict(inputs, outputs)
        finally:
            observe(time.perf_counter() - started, time.thread_time() - cpu_started)

    def _predict_alone(self, item: _Pending) -> None:
        try:
            results = self._call_model(item.inputs, item.outputs)
        except ValueError as error:  # how every runtime says the library refused the input
            where = "inputs[0].data" if len(item.inputs) == 1 else "inputs"
            item.future.set_exception(BadRequest(f"{where}: model '{self.model.name}' rejected it: {error}"))
        except Exception as error:
            item.future.set_exception(ServerError(f"model '{self.model.name}' failed: {type(error).__name__}"))
        else:
            self._answer(item, {name: results[name] for name in item.outputs})
