"""The GPU check: the XGBoost and ONNX (MLP) examples on CUDA and on the CPU, through the server's
own runtimes (model_server.runtimes: the predict call a worker makes for one batch, host arrays in
and out, without HTTP), in the CUDA image or a venv with app/requirements-cuda.txt.

    python bench/gpu_check.py --examples app/examples [--seconds 1] [--json out.json]

bench/gpu_check.sh runs it in the CUDA image with the GPUs given to the container; see there.

Per model it checks that the CUDA outputs agree with the CPU's (TOLERANCE), reports rows/s at
batch sizes 1, 64, 1024 and 16384 on each device, the smallest batch at which the GPU is faster,
and the batching figures for GPU pools that should replace the provisional defaults (the server's
GPU_BATCH in app/model_server/model.py, the stack's modelService.maxBatchSize/maxBatchWaitMs):

- maxBatchSize: the smallest measured batch whose GPU rows/s is within 10 % of the best measured
  (a larger batch adds latency and memory for little throughput);
- maxBatchWaitMs: the GPU's time for one such batch, rounded up to 0.5 ms and at most 5 ms: at low
  load a request then waits for company no longer than one predict call takes, and under load the
  queue fills batches while the previous one runs, so the wait is rarely spent.

The CPU runs with every CPU of the machine as library threads (--cpu-threads): the CPU's best case.

Exit status: 0 all agree; 1 an output disagrees beyond the tolerance; 2 no usable GPU (saying why).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

# isort: off
# model_server first, as `python -m model_server` imports it: it holds OpenMP at one thread until a runtime
# sets its own, so the CUDA probes' forked processes do not deadlock on a pool made before the fork.
import model_server  # noqa: F401  (on PYTHONPATH: app/, or /app in the image)
import numpy as np
import onnxruntime as ort
import xgboost as xgb
from model_server.runtimes import artifact_format, load
from model_server.runtimes.base import LoadOptions, Runtime, gpu_absent
# isort: on

BATCH_SIZES = (1, 64, 1024, 16384)
# Outputs compared between devices. Probabilities: float32 sums in another order on the GPU (XGBoost's
# GPU predictor, cuBLAS against MLAS for the MLP's matrix products) differ by a few float32 ulps of
# values <= 1: 1e-4 absolute is far above that and far below any decision. Classes must be equal but
# where the top two probabilities are within the tolerance (a tie either device may break).
TOLERANCE = 1e-4
WIN_SHARE = 0.9  # maxBatchSize: the smallest batch within 10 % of the best GPU rows/s
MAX_WAIT_MS = 5.0
# (example directory, artifact, probabilities output, class output)
EXAMPLES = {"xgboost": ("model.ubj", "predict_proba", "predict"),
            "onnx-mlp": ("model.onnx", "probabilities", "label")}
# Iris-like rows (the examples' features): the four measurements, in centimetres.
FEATURE_LOW = np.array([4.3, 2.0, 1.0, 0.1], np.float32)
FEATURE_HIGH = np.array([7.9, 4.4, 6.9, 2.5], np.float32)


@dataclass
class Timing:
    batch: int
    cpu_rows_per_s: float
    cuda_rows_per_s: float
    cuda_batch_ms: float

    @property
    def speedup(self) -> float:
        return self.cuda_rows_per_s / self.cpu_rows_per_s


@dataclass
class ModelReport:
    example: str
    max_abs_difference: float
    class_mismatches: int
    timings: list[Timing]
    gpu_wins_from: int | None  # the smallest measured batch at which CUDA is faster; None: never
    max_batch_size: int
    max_batch_wait_ms: float

    @property
    def agrees(self) -> bool:
        return self.max_abs_difference <= TOLERANCE and self.class_mismatches == 0


def gpu_problem() -> str | None:
    """Why CUDA cannot be measured here, or None. The server's own test first (a /dev/nvidia<N>)."""
    reasons = [absent] if (absent := gpu_absent()) else []
    if not xgb.build_info().get("USE_CUDA"):
        reasons.append(f"xgboost {xgb.__version__} is built without CUDA (install app/requirements-cuda.txt)")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reasons.append(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu)")
    return "; ".join(reasons) or None


def rows(count: int, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return (FEATURE_LOW + generator.random((count, 4), np.float32) * (FEATURE_HIGH - FEATURE_LOW)).astype(np.float32)


def rows_per_second(predict: Callable[[], object], batch_rows: int, seconds: float) -> tuple[float, float]:
    """(rows/s, ms per call) of `predict()` called repeatedly for about `seconds` (after one warm call)."""
    predict()
    calls, started = 0, time.perf_counter()
    while True:
        predict()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 3:
            return calls * batch_rows / elapsed, elapsed / calls * 1000


def crossover(timings: list[Timing]) -> int | None:
    return next((timing.batch for timing in timings if timing.cuda_rows_per_s > timing.cpu_rows_per_s), None)


def recommend(timings: list[Timing]) -> tuple[int, float]:
    """(maxBatchSize, maxBatchWaitMs) for GPU pools from the CUDA timings (see the module's docstring)."""
    best = max(timing.cuda_rows_per_s for timing in timings)
    chosen = next(timing for timing in timings if timing.cuda_rows_per_s >= WIN_SHARE * best)
    return chosen.batch, min(MAX_WAIT_MS, math.ceil(chosen.cuda_batch_ms * 2) / 2)


def disagreement(example: str, cpu: dict[str, np.ndarray], cuda: dict[str, np.ndarray]) -> tuple[float, int]:
    """(largest absolute difference of the probabilities, classes that differ where the CPU's margin
    between its top two probabilities exceeds the tolerance)."""
    _, probabilities, classes = EXAMPLES[example]
    difference = float(np.max(np.abs(cpu[probabilities].astype(np.float64) - cuda[probabilities])))
    top_two = np.sort(cpu[probabilities], axis=1)[:, -2:]
    decided = (top_two[:, 1] - top_two[:, 0]) > TOLERANCE
    mismatches = int(np.sum((cpu[classes].ravel() != cuda[classes].ravel()) & decided))
    return difference, mismatches


def check(example: str, directory: Path, seconds: float, cpu_threads: int) -> ModelReport:
    artifact, _, _ = EXAMPLES[example]
    path = directory / example / artifact
    data = path.read_bytes()
    fmt = artifact_format(path, "auto", data)
    # Both loaded (MODEL_DEVICE=cuda's probes fork) before either is warmed up (thread pools, CUDA context),
    # as the supervisor loads before its workers warm up.
    runtimes: dict[str, Runtime] = {
        device: load(data, fmt, False, LoadOptions(path=path, device=device, threads=cpu_threads))
        for device in ("cpu", "cuda")}
    for device, runtime in runtimes.items():
        assert runtime.device == device, f"{example}: asked for {device}, got {runtime.device}"
        runtime.warm_up()
    name = runtimes["cpu"].inputs[0].name
    outputs = frozenset(runtimes["cpu"].outputs)
    sample = rows(max(BATCH_SIZES), seed=1)
    difference, mismatches = disagreement(example, runtimes["cpu"].predict({name: sample}, outputs),
                                          runtimes["cuda"].predict({name: sample}, outputs))
    timings = []
    for size in BATCH_SIZES:
        batch = {name: rows(size)}
        measured = {device: rows_per_second(partial(runtime.predict, batch, outputs), size, seconds)
                    for device, runtime in runtimes.items()}
        timings.append(Timing(size, measured["cpu"][0], measured["cuda"][0], measured["cuda"][1]))
    size, wait_ms = recommend(timings)
    return ModelReport(example, difference, mismatches, timings, crossover(timings), size, wait_ms)


def table(report: ModelReport) -> str:
    lines = [f"{report.example}: outputs {'agree' if report.agrees else 'DISAGREE'} (largest probability "
             f"difference {report.max_abs_difference:.2e}, tolerance {TOLERANCE:g}; "
             f"{report.class_mismatches} decided classes differ)",
             f"  {'batch':>6} {'CPU rows/s':>14} {'CUDA rows/s':>14} {'CUDA ms/batch':>14} {'CUDA/CPU':>9}"]
    lines += [f"  {t.batch:>6} {t.cpu_rows_per_s:>14,.0f} {t.cuda_rows_per_s:>14,.0f} {t.cuda_batch_ms:>14.3f} "
              f"{t.speedup:>8.2f}x" for t in report.timings]
    wins = (f"from batches of {report.gpu_wins_from} row{'s' * (report.gpu_wins_from != 1)}"
            if report.gpu_wins_from is not None
            else "at none of the measured batch sizes: keep this model on a CPU pool")
    lines += [f"  the GPU is faster {wins}",
              f"  GPU pool batching: maxBatchSize {report.max_batch_size}, maxBatchWaitMs {report.max_batch_wait_ms:g}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--examples", type=Path, default=Path(__file__).resolve().parent.parent / "app" / "examples")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per device and batch size")
    parser.add_argument("--cpu-threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, help="also write the reports here")
    arguments = parser.parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(f"gpu_check: no GPU to check: {problem}", file=sys.stderr)
        return 2
    # Outside the CUDA image (whose LD_LIBRARY_PATH names them) the CUDA libraries from PyPI are in
    # site-packages, where ONNX Runtime's CUDA provider does not look unless they are preloaded.
    if "nvidia" not in os.environ.get("LD_LIBRARY_PATH", ""):
        ort.preload_dlls()
    reports = [check(example, arguments.examples, arguments.seconds, arguments.cpu_threads) for example in EXAMPLES]
    for report in reports:
        print(table(report))
    sizes = [report.max_batch_size for report in reports]
    waits = [report.max_batch_wait_ms for report in reports]
    print(f"\nFor GPU pools (replacing the provisional defaults): maxBatchSize {max(sizes)}, maxBatchWaitMs "
          f"{max(waits):g} (the larger of the models' figures; set per model with modelService.maxBatchSize "
          "and modelService.maxBatchWaitMs, or MODEL_MAX_BATCH_SIZE and MODEL_MAX_BATCH_WAIT_MS)")
    if arguments.json:
        arguments.json.write_text(json.dumps([{**asdict(report), "agrees": report.agrees} for report in reports],
                                             indent=2) + "\n")
    return 0 if all(report.agrees for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
