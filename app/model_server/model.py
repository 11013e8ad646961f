"""The model contract: load an artifact safely, describe its tensors, predict.

Loading reads the file once, checks those exact bytes against the pinned sha256 and
deserializes the same bytes (no window in which another file could be read). A pickle
runs code when loaded, so an unpinned artifact is refused unless local development is
declared explicitly; a skops artifact only instantiates types we trust, taken from the
server's settings and never from the artifact.
"""

from __future__ import annotations

import hashlib
import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from model_server.datatypes import datatype_of
from model_server.errors import BadRequest, ModelLoadError
from model_server.settings import ServerSettings

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib"}
SKOPS_SUFFIXES = {".skops"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass
class Model:
    """A loaded estimator and what the protocol needs to know about it."""

    name: str
    version: str
    sha256: str
    estimator: Any
    n_features: int
    allows_nan: bool
    load_seconds: float
    outputs: dict[str, TensorSpec] = field(default_factory=dict)

    @property
    def input(self) -> TensorSpec:
        return TensorSpec("input-0", "FP64", [-1, self.n_features])

    def predict(self, rows: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        """Run the estimator on a (n, n_features) float64 array for the requested outputs."""
        results: dict[str, np.ndarray] = {}
        for name in outputs:
            results[name] = np.asarray(getattr(self.estimator, name)(rows))
        return results

    def warm_up(self) -> None:
        """One real prediction, so the first request does not pay for lazy initialisation."""
        self.predict(np.zeros((1, self.n_features)), frozenset(self.outputs))


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


def artifact_format(settings: ServerSettings) -> str:
    if settings.format != "auto":
        return settings.format
    suffix = settings.path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    if suffix in SKOPS_SUFFIXES:
        return "skops"
    raise ModelLoadError(
        f"cannot tell the format of {settings.path} from its extension; use one of "
        f"{', '.join(sorted(PICKLE_SUFFIXES | SKOPS_SUFFIXES))} or set MODEL_FORMAT=pickle|skops")


def deserialize(data: bytes, settings: ServerSettings) -> Any:
    fmt = artifact_format(settings)
    with warnings.catch_warnings():
        # A model pickled by another scikit-learn version may predict differently: refuse it.
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            if fmt == "skops":
                # Imported only for skops artifacts: it loads every type it trusts (about half of
                # scikit-learn), which would add most of a second to every pickle server's start.
                import skops.io

                untrusted = [t for t in skops.io.get_untrusted_types(data=data)
                             if t not in settings.skops_trusted_types]
                if untrusted:
                    raise ModelLoadError(
                        f"skops artifact {settings.path} contains types that are not trusted: {', '.join(untrusted)}; "
                        "if you trust them, list them in MODEL_SKOPS_TRUSTED_TYPES (a JSON list)")
                return skops.io.loads(data, trusted=list(settings.skops_trusted_types) or None)
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as warning:
            raise ModelLoadError(
                f"model file {settings.path} was saved with scikit-learn {warning.original_sklearn_version}, "
                f"this server runs {sklearn.__version__}: retrain the model or build the image with "
                f"scikit-learn=={warning.original_sklearn_version}") from None
        except ModelLoadError:
            raise
        except Exception as error:  # any failure to deserialize means the artifact is unusable
            raise ModelLoadError(
                f"model file {settings.path} is truncated or corrupt ({type(error).__name__}: {error})") from None


def _accepts_nan(estimator: Any, n_features: int) -> bool:
    """Some estimators handle missing values (HistGradientBoosting); most raise on NaN."""
    try:
        estimator.predict(np.full((1, n_features), np.nan))
    except ValueError:
        return False
    return True


def load_model(settings: ServerSettings) -> Model:
    started = time.perf_counter()
    data, digest = read_artifact(settings)
    estimator = deserialize(data, settings)
    if not callable(getattr(estimator, "predict", None)):
        raise ModelLoadError(f"model file {settings.path} holds a {type(estimator).__name__}, which has no predict()")
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise ModelLoadError(
            f"model file {settings.path} holds an estimator without n_features_in_ (not fitted, or fitted by "
            "scikit-learn < 1.0): the server cannot validate inputs against it")
    model = Model(
        name=settings.name, version=settings.version, sha256=digest, estimator=estimator, n_features=n_features,
        allows_nan=_accepts_nan(estimator, n_features), load_seconds=0.0)
    probe = np.zeros((1, n_features))
    for output in ("predict", "predict_proba"):
        if hasattr(estimator, output):
            result = np.asarray(getattr(estimator, output)(probe))
            model.outputs[output] = TensorSpec(output, datatype_of(result), [-1, *result.shape[1:]])
    model.load_seconds = time.perf_counter() - started
    return model


def validate_rows(model: Model, rows: np.ndarray, where: str) -> None:
    """Reject values the estimator cannot take, naming the field (a client error, never a 500)."""
    if model.allows_nan:
        if np.isinf(rows).any():
            raise BadRequest(f"{where}: contains infinite values, which model '{model.name}' cannot take")
    elif not np.isfinite(rows).all():
        raise BadRequest(f"{where}: contains NaN or infinite values, which model '{model.name}' cannot take")
