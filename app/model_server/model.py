"""Loading the model: read the artifact once, verify it, and hand those bytes to its runtime.

Loading reads the file once, checks those exact bytes against the pinned sha256 and gives the same
bytes to the runtime (no window in which another file could be read). A pickle runs code when
loaded, so an unpinned artifact is refused unless local development is declared explicitly. What
each runtime checks besides (versions, trusted types, devices) is in its module, runtimes/*.py.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from model_server import runtimes
from model_server.errors import ModelLoadError
from model_server.runtimes.base import Inputs, InputSpec, LoadOptions, Runtime, TensorSpec
from model_server.settings import ServerSettings

# Batching defaults. On a CPU a batch costs about its rows, so nothing waits; a GPU's cost barely
# grows with rows, so requests wait a little to fill bigger batches. Provisional: no GPU was at hand
# to measure them (bench/gpu_check.sh reports the figures that should replace them).
CPU_BATCH = (1024, 0.0)
GPU_BATCH = (8192, 2.0)  # rows, milliseconds


@dataclass
class Model:
    """A loaded runtime and what the server says about it."""

    name: str
    version: str
    sha256: str
    runtime: Runtime
    load_seconds: float
    max_batch_size: int
    max_batch_wait_s: float
    threads: int

    @property
    def inputs(self) -> list[InputSpec]:
        return self.runtime.inputs

    @property
    def outputs(self) -> dict[str, TensorSpec]:
        return self.runtime.outputs

    @property
    def n_features(self) -> int | None:
        """Values per row of a model taking one [rows, features] tensor, else None."""
        return self.inputs[0].features if len(self.inputs) == 1 else None

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        return self.runtime.predict(inputs, outputs)

    def warm_up(self) -> None:
        self.runtime.warm_up()


def read_artifact(settings: ServerSettings) -> tuple[bytes, str]:
    path = settings.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} does not exist (MODEL_PATH)") from None
    except OSError as error:
        raise ModelLoadError(f"model file {path} cannot be read: {error.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if settings.sha256 is not None and digest != settings.sha256:
        raise ModelLoadError(
            f"model file {path} has sha256 {digest}, but MODEL_SHA256 pins {settings.sha256}: "
            "refusing to load an artifact that is not the pinned one")
    return data, digest


def threads_per_worker(settings: ServerSettings) -> int:
    """Library threads per worker: MODEL_THREADS, else the CPUs shared out so workers x threads <= CPUs."""
    return settings.threads or max(1, len(os.sched_getaffinity(0)) // settings.workers)


def load_model(settings: ServerSettings) -> Model:
    started = time.perf_counter()
    data, digest = read_artifact(settings)
    fmt = runtimes.artifact_format(settings.path, settings.format, data)
    threads = threads_per_worker(settings)
    options = LoadOptions(path=settings.path, device=settings.device, threads=threads,
                          skops_trusted_types=tuple(settings.skops_trusted_types))
    runtime = runtimes.load(data, fmt, settings.format != "auto", options)
    default_size, default_wait_ms = GPU_BATCH if runtime.device == "cuda" else CPU_BATCH
    # A model whose tensors do not all have rows first (and fixed other dimensions) predicts one request at a time.
    max_batch_size = (settings.max_batch_size or default_size) if runtime.batchable else 1
    wait_ms = default_wait_ms if settings.max_batch_wait_ms is None else settings.max_batch_wait_ms
    return Model(name=settings.name, version=settings.version, sha256=digest, runtime=runtime,
                 load_seconds=time.perf_counter() - started, max_batch_size=max_batch_size,
                 max_batch_wait_s=wait_ms / 1000, threads=threads)
