"""The contract every model runtime keeps, as MLServer's runtimes keep theirs (`load`, `predict`).

A runtime is given the artifact's bytes once they are verified (model.py reads the file once and
checks its sha256; no runtime opens the file itself), and says what the protocol needs: its inputs
and outputs (names, OIP datatypes, shapes with -1 for a dynamic dimension), the device it runs on,
and how to predict a batch: named input arrays in, named output arrays out, rows first. The HTTP,
protocol, batching and worker layers know nothing else about a model.

The supervisor loads the runtime before forking its workers; each worker then calls `warm_up`,
which is where anything that must not cross a fork (thread pools, a CUDA context) is created.
"""

from __future__ import annotations

import os
import pickle
import re
import select
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from model_server.datatypes import NUMERIC_DTYPES
from model_server.errors import ModelLoadError

Device = Literal["cpu", "cuda"]
PROBE_TIMEOUT_S = 120.0  # a first CUDA context can take tens of seconds
Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class InputSpec(TensorSpec):
    """An input as the protocol checks it: which wire datatypes it takes (each cast to `dtype`, what
    the library is given), and which non-finite values it can take."""

    dtype: np.dtype[Any]
    accepts: frozenset[str] = frozenset(NUMERIC_DTYPES)
    nan_ok: bool = False
    inf_ok: bool = False
    # Values per row of a [rows, features] input (the tabular case), else None. A field, not a
    # property: the protocol reads it for every request.
    features: int | None = field(init=False)

    def __post_init__(self) -> None:
        tabular = len(self.shape) == 2 and self.shape[1] >= 0
        object.__setattr__(self, "features", self.shape[1] if tabular else None)


@dataclass(frozen=True)
class LoadOptions:
    """What a runtime may read of the server's settings (the rest is the server's business)."""

    path: Path
    device: Literal["auto", "cpu", "cuda"]
    threads: int  # library threads per worker process: workers x threads <= CPUs
    skops_trusted_types: tuple[str, ...] = ()


class Runtime(ABC):
    """One loaded model of one kind. Subclasses set the class attributes and fill the fields."""

    kind: ClassVar[str]  # the MODEL_FORMAT family and the `runtime` label: sklearn, xgboost, ...
    platform: ClassVar[str]  # the model metadata's `platform`
    inputs: list[InputSpec]
    outputs: dict[str, TensorSpec]
    device: Device = "cpu"
    device_reason: str = ""  # why auto chose the CPU, shown in the start-up line
    # Requests must name their inputs (ONNX graphs name theirs); otherwise a single input may be called anything.
    names_inputs: ClassVar[bool] = False
    # What the V1 protocol's `predictions` are.
    v1_output: str = "predict"

    @abstractmethod
    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        """The requested outputs for a batch (each input's first dimension is its rows). A refusal of
        the input by the library is raised as ValueError (a client's mistake, answered 400)."""

    def warm_up(self) -> None:
        """In each worker after the fork: create what cannot cross it, then predict once, so the first
        request does not pay for lazy initialisation."""
        self.predict({spec.name: np.zeros([1, *(max(n, 1) for n in spec.shape[1:])], spec.dtype)
                      for spec in self.inputs}, frozenset(self.outputs))

    @property
    def batchable(self) -> bool:
        """Requests can share a predict call when rows are the first dimension of every tensor and the
        other dimensions are fixed (so inputs concatenate and outputs split back by rows)."""
        return all(spec.shape[:1] == [-1] and all(n >= 0 for n in spec.shape[1:])
                   for spec in [*self.inputs, *self.outputs.values()])


def classifier_outputs(raw: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
    """A tree classifier's outputs from its raw prediction: each class's probability per row, or a
    binary model's positive-class probability alone."""
    probabilities = np.column_stack([1 - raw, raw]) if raw.ndim == 1 else raw
    results: dict[str, np.ndarray] = {}
    if "predict" in outputs:
        results["predict"] = np.argmax(probabilities, axis=1).astype(np.int64)
    if "predict_proba" in outputs:
        results["predict_proba"] = probabilities
    return results


def cpu_only(kind: str, why: str, device: str) -> tuple[Device, str]:
    """The device of a runtime that has no GPU support: refuse MODEL_DEVICE=cuda, saying why."""
    if device == "cuda":
        raise ModelLoadError(f"MODEL_DEVICE=cuda, but the {kind} runtime runs on CPU only ({why}): set "
                             "MODEL_DEVICE=cpu or auto, and place the model on a CPU node pool")
    return "cpu", "" if device == "cpu" else f"the {kind} runtime runs on CPU only"


def gpu_absent() -> str | None:
    """Why no GPU is usable in this container, or None when the NVIDIA device plugin gave it one."""
    # why: the NVIDIA container toolkit exposes each allocated GPU as /dev/nvidia<N>
    # (https://github.com/NVIDIA/k8s-device-plugin); without one, no library can reach a GPU.
    if any(name[len("nvidia"):].isdigit() for name in os.listdir("/dev") if name.startswith("nvidia")):
        return None
    return "no NVIDIA GPU is visible in this container (no /dev/nvidia<N>; request nvidia.com/gpu)"


def in_child(probe: Callable[[], str | None], what: str, quiet: bool = False) -> str | None:
    """Run `probe` in a forked child and return what it returns (a reason, or None when all is well).

    For two things the supervisor must not do in its own process: touch CUDA before forking workers
    (a CUDA context does not survive fork), and hand a library input that can abort the process
    (LightGBM calls std::terminate on some malformed models instead of raising). With `quiet` the
    child's output is dropped (LightGBM's last words about such a file include bytes of stray memory)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        os.close(read_end)
        if quiet:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
        code = 0
        try:
            result = probe()
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        try:
            os.write(write_end, pickle.dumps(result))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        # A library that deadlocks after fork (an OpenMP pool started before it) must not hang the start.
        if not select.select([pipe], [], [], PROBE_TIMEOUT_S)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"{what} did not answer within {PROBE_TIMEOUT_S:g} s"
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"{what} crashed the process ({signal.Signals(os.WTERMSIG(status)).name})"
    if not report:
        return f"{what} failed without a report (exit {os.waitstatus_to_exitcode(status)})"
    reason: str | None = pickle.loads(report)  # our own child's report, never the artifact's bytes
    return reason


def library_message(error: BaseException) -> str:
    """A C++ library's exception text without its timestamp, source location and stack trace."""
    text = str(error).split("Stack trace:", 1)[0].strip()
    first = text.splitlines()[0] if text else type(error).__name__
    # XGBoost prefixes "[23:37:08] /workspace/src/c_api/c_api.cc:1513: ".
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", first)
