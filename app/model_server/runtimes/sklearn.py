"""scikit-learn: an estimator in a pickle/joblib file (.pkl, .pickle, .joblib) or a skops file (.skops).

Safety. A pickle runs code when it is loaded, so it is loaded only when it is trusted, and trusted
means what it meant before other runtimes existed: its exact bytes are pinned by MODEL_SHA256 (or
local development is declared with MODEL_ALLOW_UNPINNED). A skops file instantiates only types
trusted by default or listed in MODEL_SKOPS_TRUSTED_TYPES, never types named by the artifact. A
model pickled by another scikit-learn version may predict differently, so it is refused. A pickle
holding an XGBoost model goes to the XGBoost runtime (runtimes/xgboost.py), under the same trust.

Devices: CPU only (scikit-learn has no GPU support).

Thread-safety: `predict` on a fitted estimator reads its parameters only, but scikit-learn does not
promise concurrent calls are safe for every estimator. The server never makes any: each worker
process predicts from its one event-loop thread, and workers share the estimator copy-on-write.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from model_server.datatypes import datatype_of
from model_server.errors import ModelLoadError
from model_server.runtimes.base import Inputs, InputSpec, LoadOptions, Runtime, TensorSpec, cpu_only

INPUT = "input-0"


def deserialize(data: bytes, fmt: str, options: LoadOptions) -> Any:
    with warnings.catch_warnings():
        # A model pickled by another scikit-learn version may predict differently: refuse it.
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            if fmt == "skops":
                # Imported only for skops artifacts: it loads every type it trusts (about half of
                # scikit-learn), which would add most of a second to every pickle server's start.
                import skops.io

                untrusted = [t for t in skops.io.get_untrusted_types(data=data)
                             if t not in options.skops_trusted_types]
                if untrusted:
                    raise ModelLoadError(
                        f"skops artifact {options.path} contains types that are not trusted: {', '.join(untrusted)}; "
                        "if you trust them, list them in MODEL_SKOPS_TRUSTED_TYPES (a JSON list)")
                return skops.io.loads(data, trusted=list(options.skops_trusted_types) or None)
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as warning:
            raise ModelLoadError(
                f"model file {options.path} was saved with scikit-learn {warning.original_sklearn_version}, "
                f"this server runs {sklearn.__version__}: retrain the model or build the image with "
                f"scikit-learn=={warning.original_sklearn_version}") from None
        except ModelLoadError:
            raise
        except Exception as error:  # any failure to deserialize means the artifact is unusable
            raise ModelLoadError(
                f"model file {options.path} is truncated or corrupt ({type(error).__name__}: {error})") from None


def _accepts_nan(estimator: Any, n_features: int) -> bool:
    """Some estimators handle missing values (HistGradientBoosting); most raise on NaN."""
    try:
        # Checked whatever a warmed-up runtime set process-wide (the gate loads two in one process).
        with sklearn.config_context(assume_finite=False):
            estimator.predict(np.full((1, n_features), np.nan))
    except ValueError:
        return False
    return True


def load(data: bytes, fmt: str, options: LoadOptions) -> Runtime:
    estimator = deserialize(data, fmt, options)
    if type(estimator).__module__.split(".")[0] == "xgboost":
        from model_server.runtimes import xgboost

        return xgboost.from_pickle(estimator, data, options)
    return SklearnRuntime(estimator, options)


class SklearnRuntime(Runtime):
    kind = "sklearn"
    platform = "sklearn"

    def __init__(self, estimator: Any, options: LoadOptions) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError(
                f"model file {options.path} holds a {type(estimator).__name__}, which has no predict()")
        n_features = getattr(estimator, "n_features_in_", None)
        if not isinstance(n_features, int):
            raise ModelLoadError(
                f"model file {options.path} holds an estimator without n_features_in_ (not fitted, or fitted by "
                "scikit-learn < 1.0): the server cannot validate inputs against it")
        self.device, self.device_reason = cpu_only(self.kind, "scikit-learn has no GPU support", options.device)
        self.estimator = estimator
        self.n_features = n_features
        self.allows_nan = _accepts_nan(estimator, n_features)
        # Any numeric datatype is taken and cast to float64, what scikit-learn computes in.
        self.inputs = [InputSpec(INPUT, "FP64", [-1, n_features], np.dtype(np.float64), nan_ok=self.allows_nan)]
        self.outputs = {}
        probe = np.zeros((1, n_features))
        for output in ("predict", "predict_proba"):
            if hasattr(estimator, output):
                result = np.asarray(getattr(estimator, output)(probe))
                self.outputs[output] = TensorSpec(output, datatype_of(result), [-1, *result.shape[1:]])

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        rows = inputs[INPUT]
        return {name: np.asarray(getattr(self.estimator, name)(rows)) for name in outputs}

    def warm_up(self) -> None:
        # Every row reaching the model has passed the protocol's checks (no infinities; no NaN
        # unless the model takes them), so scikit-learn need not scan the input again.
        sklearn.set_config(assume_finite=True)
        super().warm_up()
