"""LightGBM: a Booster in LightGBM's text model format (`Booster.save_model`, `model_to_string`),
loaded with `Booster(model_str=...)`. https://lightgbm.readthedocs.io/en/stable/Python-Intro.html

Safety. The text format is data, not code. The version pinned in app/requirements.txt is 4.6.0 or
later, which fixes CVE-2024-43598; LightGBM's maintainers say that concerns distributed training
(microsoft/LightGBM#6759: "only affects distributed
(multi-machine) training"), which the server never does: the pin is
hygiene, not a property of the format. A file whose model format is newer than this LightGBM reads
(`version=v4` today) is refused (exit 1). LightGBM's parser stops the whole process
(std::terminate) on some malformed files instead of raising, so a file is first parsed in a probe
process: a truncated or corrupt model is refused with a message, never a crash.

Outputs, as MLServer's LightGBM runtime gives them: `predict` (the class for binary and multiclass
objectives, else the booster's prediction) and, for those classifiers, `predict_proba`. Input: one
FP64 tensor [rows, features]; any numeric datatype is cast to float64; NaN means missing.

Devices: CPU only (the PyPI wheel is built without CUDA).

Thread-safety: LightGBM does not document Booster.predict as safe to call from several threads at
once. The server never does: each worker predicts from its one thread with `num_threads` =
MODEL_THREADS (workers x threads <= CPUs); the supervisor predicts with one thread only, since an
OpenMP pool made before fork is not usable in the workers.
"""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np

from model_server.errors import ModelLoadError
from model_server.runtimes.base import (
    Inputs,
    InputSpec,
    LoadOptions,
    Runtime,
    TensorSpec,
    classifier_outputs,
    cpu_only,
    in_child,
)

INPUT = "input-0"
HEADER = b"tree\n"  # the first line of every text model (gbdt.cpp, GBDT::SaveModelToString)
MODEL_FORMAT_VERSION = 4  # "version=v4": the text format LightGBM 4.x writes and reads
_VERSION = re.compile(rb"^version=v(\d+)$", re.M)
_OBJECTIVE = re.compile(rb"^objective=(\S+)", re.M)
CLASSIFIERS = ("binary", "multiclass", "multiclassova")


def _parses(text: str) -> str | None:
    lgb.Booster(model_str=text)
    return None


def load(data: bytes, fmt: str, options: LoadOptions) -> Runtime:
    if not data.startswith(HEADER):
        raise ModelLoadError(f"model file {options.path} is not a LightGBM text model (it does not begin with "
                             "'tree'): save it with booster.save_model('model.txt')")
    head = data[:4096]
    version = _VERSION.search(head)
    if version is not None and int(version[1]) > MODEL_FORMAT_VERSION:
        raise ModelLoadError(
            f"model file {options.path} is in LightGBM's model format v{int(version[1])}, this server's LightGBM "
            f"{lgb.__version__} reads v{MODEL_FORMAT_VERSION}: build the image with the LightGBM that saved it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelLoadError(f"model file {options.path} is truncated or corrupt (not UTF-8 text)") from None
    if "\nend of trees\n" not in text:
        raise ModelLoadError(f"model file {options.path} is truncated or corrupt (no 'end of trees' line)")
    problem = in_child(lambda: _parses(text), "LightGBM's model parser", quiet=True)
    if problem is not None:
        raise ModelLoadError(f"model file {options.path} is truncated or corrupt ({problem})")
    objective = _OBJECTIVE.search(head)
    return LightGBMRuntime(lgb.Booster(model_str=text), objective[1].decode() if objective else "", options)


class LightGBMRuntime(Runtime):
    kind = "lightgbm"
    platform = "lightgbm"

    def __init__(self, booster: lgb.Booster, objective: str, options: LoadOptions) -> None:
        self.device, self.device_reason = cpu_only(self.kind, "the LightGBM wheel is built without CUDA",
                                                   options.device)
        self.booster = booster
        self.classifier = objective in CLASSIFIERS
        self.num_threads = 1  # MODEL_THREADS from warm_up on, in the worker
        self.threads = options.threads
        n_features = booster.num_feature()
        self.inputs = [InputSpec(INPUT, "FP64", [-1, n_features], np.dtype(np.float64), nan_ok=True, inf_ok=True)]
        probe = self._raw(np.zeros((1, n_features)))
        if self.classifier:
            classes = 2 if probe.ndim == 1 else probe.shape[1]
            self.outputs = {"predict": TensorSpec("predict", "INT64", [-1]),
                            "predict_proba": TensorSpec("predict_proba", "FP64", [-1, classes])}
        else:
            self.outputs = {"predict": TensorSpec("predict", "FP64", [-1, *probe.shape[1:]])}

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.booster.predict(rows, num_threads=self.num_threads))
        except lgb.basic.LightGBMError as error:  # e.g. another feature count: the input is refused
            raise ValueError(str(error).splitlines()[0]) from None

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        raw = self._raw(inputs[INPUT])
        if not self.classifier:
            return {"predict": raw}
        return classifier_outputs(raw, outputs)

    def warm_up(self) -> None:
        self.num_threads = self.threads
        super().warm_up()
