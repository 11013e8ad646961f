"""XGBoost: a Booster in XGBoost's own formats, UBJSON (.ubj, the default since 2.1) or JSON (.json
holding a `learner`). https://xgboost.readthedocs.io/en/stable/tutorials/saving_model.html

Safety. Both formats are data, not code, and XGBoost reads models saved by older versions; a model
saved by a newer XGBoost than the server's is refused (exit 1), since it may use what this one does
not know. XGBoost 3.1 removed the old binary format (`.bin`, `.model`, `.bst` without a JSON or
UBJSON header): such a file is refused with the hint to re-save it as `.ubj`. A pickled XGBoost model
(a Booster or XGBClassifier in a `.pkl`) runs code when loaded and is, per XGBoost's docs, a snapshot
that may not load in another version: it is loaded only when pickles are trusted (the same rule as
for scikit-learn: pinned by MODEL_SHA256, see runtimes/sklearn.py) and only by the XGBoost version
that pickled it.

Outputs, as MLServer's XGBoost runtime gives them: `predict` (the class for a classification
objective, else the booster's prediction) and, for binary:logistic and multi:softprob,
`predict_proba` [rows, classes]. Input: one FP32 tensor [rows, features]; any numeric datatype is
cast to float32 (what XGBoost computes in); NaN means missing.

Devices: CUDA when XGBoost is built with it (the `xgboost` wheel, CUDA 13; `xgboost-cpu` is not)
and the container has a GPU, set with `device="cuda"`. XGBoost would otherwise fall back to the CPU
with only a warning, so MODEL_DEVICE=cuda checks both, and a prediction in a probe process, and
refuses to start saying which failed.

Thread-safety: prediction is thread-safe for the gbtree and dart boosters (XGBoost's docs,
"Prediction": https://xgboost.readthedocs.io/en/stable/prediction.html#thread-safety), not
documented for gblinear. The server needs neither: each worker predicts from one thread, with
`nthread` = MODEL_THREADS (so workers x threads <= CPUs). The supervisor predicts (to describe the
outputs) with one thread only: an OpenMP pool made before fork is not usable in the workers.
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import numpy as np
import xgboost as xgb

from model_server.errors import ModelLoadError
from model_server.runtimes.base import (
    Device,
    Inputs,
    InputSpec,
    LoadOptions,
    Runtime,
    TensorSpec,
    classifier_outputs,
    gpu_absent,
    in_child,
    library_message,
)

INPUT = "input-0"
RESAVE = "load it with the XGBoost that saved it and save it with booster.save_model('model.ubj')"
# The model's `version` array, at the end of the document (JSON: "version":[3,2,0]; UBJSON: an
# optimised array of three int8). Also found inside a pickle, which embeds the UBJSON model.
_JSON_VERSION = re.compile(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
_UBJ_VERSION = re.compile(rb"\x07version\[#(?:i.|U.|l.{4}|L.{8})i(.)i(.)i(.)", re.S)


def _library_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", xgb.__version__)[:3])


def saved_version(data: bytes) -> tuple[int, ...] | None:
    match = _UBJ_VERSION.search(data[-256:] if data[:1] == b"{" else data)
    if match:
        return tuple(part[0] for part in match.groups())
    match = _JSON_VERSION.search(data[-256:])
    return tuple(int(part) for part in match.groups()) if match else None


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def load(data: bytes, fmt: str, options: LoadOptions) -> Runtime:
    head = data[:64].lstrip()
    if head[:1] != b"{":
        raise ModelLoadError(
            f"model file {options.path} is not in an XGBoost format this server reads (UBJSON or JSON): XGBoost "
            f">= 3.1 cannot read the old binary format; {RESAVE}")
    if head[:2] == b'{"' and not head.startswith(b'{"learner"'):
        raise ModelLoadError(f"model file {options.path} is JSON without an XGBoost `learner`: not an XGBoost model "
                             "(set MODEL_FORMAT to what it is)")
    saved = saved_version(data)
    if saved is not None and saved[:2] > _library_version()[:2]:
        raise ModelLoadError(
            f"model file {options.path} was saved with XGBoost {dotted(saved)}, this server runs {xgb.__version__}: "
            f"build the image with xgboost {dotted(saved)} or later, or save the model with XGBoost {xgb.__version__}")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as error:
        raise ModelLoadError(
            f"model file {options.path} is truncated or corrupt (XGBoost: {library_message(error)})") from None
    return XGBoostRuntime(booster, options)


def from_pickle(estimator: Any, data: bytes, options: LoadOptions) -> Runtime:
    """A pickled Booster or scikit-learn-API model (XGBClassifier, XGBRegressor), already unpickled
    under the pickle trust rule; refused unless this XGBoost version pickled it."""
    saved = saved_version(data)
    if saved is not None and saved != _library_version():
        raise ModelLoadError(
            f"model file {options.path} is an XGBoost model pickled by XGBoost {dotted(saved)}, this server runs "
            f"{xgb.__version__}: a pickle is a snapshot of one version; {RESAVE}")
    booster = estimator.get_booster() if hasattr(estimator, "get_booster") else estimator
    if not isinstance(booster, xgb.Booster):
        raise ModelLoadError(f"model file {options.path} holds a {type(estimator).__name__}, not an XGBoost model")
    return XGBoostRuntime(booster, options)


def _cuda_probe(raw: bytearray) -> str | None:
    """In a probe process: can this XGBoost predict on the GPU? (None: yes)."""
    booster = xgb.Booster()
    booster.load_model(raw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        booster.set_param({"device": "cuda"})
        booster.inplace_predict(np.zeros((1, booster.num_features()), np.float32))
    device = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    if not device.startswith("cuda"):
        return f"XGBoost kept device {device!r}: {'; '.join(str(w.message) for w in caught) or 'no reason given'}"
    return None


def resolve_device(booster: xgb.Booster, requested: str) -> tuple[Device, str]:
    if requested == "cpu":
        return "cpu", ""
    reasons = []
    if not xgb.build_info().get("USE_CUDA"):
        reasons.append(f"this XGBoost {xgb.__version__} is built without CUDA (xgboost-cpu; the CUDA image "
                       "installs the xgboost wheel)")
    absent = gpu_absent()
    if absent:
        reasons.append(absent)
    if not reasons:
        probe = in_child(lambda: _cuda_probe(booster.save_raw("ubj")), "XGBoost's CUDA probe")
        if probe:
            reasons.append(probe)
    if not reasons:
        return "cuda", ""
    if requested == "cuda":
        raise ModelLoadError(f"MODEL_DEVICE=cuda, but XGBoost cannot use CUDA here: {'; '.join(reasons)}; "
                             "set MODEL_DEVICE=auto or cpu to serve on the CPU")
    return "cpu", "; ".join(reasons)


class XGBoostRuntime(Runtime):
    kind = "xgboost"
    platform = "xgboost"

    def __init__(self, booster: xgb.Booster, options: LoadOptions) -> None:
        self.booster = booster
        self.threads = options.threads
        self.nthread = 1  # see the module's docstring: no OpenMP pool before fork; MODEL_THREADS from warm_up on
        booster.set_param({"nthread": 1})
        learner = json.loads(booster.save_config())["learner"]
        self.objective = str(learner["objective"]["name"])
        n_features = booster.num_features()
        self.device, self.device_reason = resolve_device(booster, options.device)
        self.inputs = [InputSpec(INPUT, "FP32", [-1, n_features], np.dtype(np.float32), nan_ok=True, inf_ok=True)]
        probe = self._raw(np.zeros((1, n_features), np.float32))
        self.outputs = {}
        if self.objective in ("binary:logistic", "multi:softprob", "multi:softmax"):
            self.outputs["predict"] = TensorSpec("predict", "INT64", [-1])
            if self.objective != "multi:softmax":
                classes = 2 if probe.ndim == 1 else probe.shape[1]
                self.outputs["predict_proba"] = TensorSpec("predict_proba", "FP32", [-1, classes])
        else:
            self.outputs["predict"] = TensorSpec("predict", "FP32", [-1, *probe.shape[1:]])

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        try:
            if self.device == "cuda":
                # Host arrays given to inplace_predict on a CUDA booster take a slower path with a
                # warning per call ("mismatched devices"); a DMatrix is copied to the GPU once.
                return np.asarray(self.booster.predict(xgb.DMatrix(rows, nthread=self.nthread)))
            return np.asarray(self.booster.inplace_predict(rows))
        except xgb.core.XGBoostError as error:  # a ValueError: the input is refused (e.g. its feature count)
            raise ValueError(library_message(error)) from None

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        raw = self._raw(inputs[INPUT])
        if self.objective == "multi:softmax":
            return {"predict": raw.astype(np.int64)}
        if self.objective not in ("binary:logistic", "multi:softprob"):
            return {"predict": raw}
        return classifier_outputs(raw, outputs)

    def warm_up(self) -> None:
        self.nthread = self.threads
        self.booster.set_param({"nthread": self.threads, "device": self.device})
        super().warm_up()
