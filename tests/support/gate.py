"""Artifacts for the model gate's tests, fitted into a test's folder (never committed)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_iris

from train import train


def iris_labels() -> np.ndarray:
    labels: np.ndarray = load_iris(return_X_y=True)[1]
    return labels


def fitted_on(labels: np.ndarray) -> Any:
    """app/train.py's pipeline, fitted on the iris features with the given labels instead."""
    features = load_iris(return_X_y=True)[0]
    return clone(train()).fit(features, labels)


def shuffled_labels() -> np.ndarray:
    """Labels that no longer belong to their rows: a model fitted on them predicts garbage."""
    return np.random.default_rng(0).permutation(iris_labels())


def swapped_species() -> np.ndarray:
    """Versicolor and virginica swapped: a sound model of other data, 30 of the 45 evaluation rows change."""
    swapped: np.ndarray = np.array([0, 2, 1])[iris_labels()]
    return swapped


def write_pinned(directory: Path, estimator: Any, name: str = "model.pkl") -> tuple[Path, str]:
    """The artifact and its pin beside it, as app/model.pkl and app/model.pkl.sha256 are committed."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    joblib.dump(estimator, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(name + ".sha256").write_text(f"{digest}  {name}\n")
    return path, digest
