"""bench/gpu_check.sh and bench/gpu_check.py without a GPU: both refuse, saying there is none; the
measuring and the batching figures run end to end with the CPU standing in for CUDA; and the figures
follow the rules the script states."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.server import APP_DIR

BENCH_DIR = APP_DIR.parent / "bench"


@functools.cache
def gpu_check() -> ModuleType:
    """bench/gpu_check.py as a module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH_DIR / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def no_gpu_here() -> None:
    if any(path.name[len("nvidia"):].isdigit() for path in Path("/dev").glob("nvidia*")):
        pytest.skip("this machine has an NVIDIA GPU: run bench/gpu_check.sh itself")


def test_the_script_refuses_without_a_gpu_saying_so() -> None:
    result = subprocess.run([BENCH_DIR / "gpu_check.sh"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "gpu_check: no GPU to check: no NVIDIA GPU" in result.stderr


def test_the_measuring_part_refuses_without_a_gpu_saying_why() -> None:
    result = subprocess.run([sys.executable, BENCH_DIR / "gpu_check.py", "--examples", APP_DIR / "examples"],
                            capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(APP_DIR)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no GPU to check: no NVIDIA GPU is visible" in result.stderr


def test_it_measures_and_recommends_end_to_end_with_the_cpu_standing_in_for_cuda(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = gpu_check()
    real_load = module.load

    def load_on_cpu(data: bytes, fmt: str, declared: bool, options: Any) -> Any:
        """A runtime that says it is on the device asked for, but warms up (and so predicts) on the CPU."""
        runtime = real_load(data, fmt, declared, type(options)(path=options.path, device="cpu", threads=1))
        warm_up = runtime.warm_up

        def warm_up_on_cpu() -> None:
            runtime.device = "cpu"
            warm_up()
            runtime.device = options.device

        runtime.warm_up, runtime.device = warm_up_on_cpu, options.device
        return runtime

    monkeypatch.setattr(module, "gpu_problem", lambda: None)
    monkeypatch.setattr(module, "load", load_on_cpu)
    monkeypatch.setattr(module.ort, "preload_dlls", lambda: None, raising=False)
    assert module.main(["--seconds", "0.01", "--cpu-threads", "1", "--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    assert "xgboost: outputs agree" in printed and "onnx-mlp: outputs agree" in printed
    assert "For GPU pools (replacing the provisional defaults): maxBatchSize" in printed
    reports = json.loads((tmp_path / "out.json").read_text())
    assert [report["example"] for report in reports] == ["xgboost", "onnx-mlp"]
    assert all([timing["batch"] for timing in report["timings"]] == [1, 64, 1024, 16384] for report in reports)


def test_the_gpu_wins_from_the_first_faster_batch_and_the_batch_size_is_the_knee() -> None:
    module = gpu_check()
    timings = [module.Timing(1, 1e4, 2e3, 0.5), module.Timing(64, 3e5, 1e5, 0.64),
               module.Timing(1024, 1e6, 2.3e6, 0.445), module.Timing(16384, 1.2e6, 2.5e6, 6.6)]
    assert module.crossover(timings) == 1024
    # 2.3e6 is within 10 % of the best, 2.5e6: the smaller batch; its 0.445 ms rounds up to 0.5 ms.
    assert module.recommend(timings) == (1024, 0.5)
    slow = [module.Timing(size, 1e6, 1e5, 20.0) for size in (1, 64, 1024, 16384)]
    assert module.crossover(slow) is None
    assert module.recommend(slow) == (1, 5.0)  # the wait is capped


def test_a_disagreement_beyond_the_tolerance_is_found() -> None:
    module = gpu_check()
    import numpy as np

    cpu = {"probabilities": np.array([[0.9, 0.1], [0.5, 0.5]], np.float32), "label": np.array([0, 0])}
    close = {"probabilities": cpu["probabilities"] + 1e-6, "label": np.array([0, 1])}  # row 2 is a tie
    assert module.disagreement("onnx-mlp", cpu, close)[1] == 0
    far = {"probabilities": np.array([[0.1, 0.9], [0.5, 0.5]], np.float32), "label": np.array([1, 0])}
    difference, mismatches = module.disagreement("onnx-mlp", cpu, far)
    assert difference == pytest.approx(0.8) and mismatches == 1
