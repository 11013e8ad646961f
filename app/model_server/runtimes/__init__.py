"""The model runtimes, one module per kind, behind the contract in base.py, and how the server
chooses one: MODEL_FORMAT when set, else the file's extension, else (for `.bst`, which XGBoost and
LightGBM both use) the file's first bytes (formats.py, which the Pulumi program reads too).

Each runtime module is imported only when its kind is served: a server of an ONNX model never
imports scikit-learn (about a second of start-up), nor XGBoost or LightGBM.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from model_server.errors import ModelLoadError
from model_server.formats import RUNTIMES, Format, UnknownFormat, detect
from model_server.runtimes.base import LoadOptions, Runtime


def artifact_format(path: Path, declared: Format | Literal["auto"], data: bytes) -> Format:
    if declared != "auto":
        return declared
    try:
        return detect(path, data)
    except UnknownFormat as unknown:
        raise ModelLoadError(f"{unknown}; set MODEL_FORMAT={'|'.join(unknown.candidates)}") from None


def load(data: bytes, fmt: Format, declared: bool, options: LoadOptions) -> Runtime:
    module = importlib.import_module(f"model_server.runtimes.{RUNTIMES[fmt]}")
    try:
        runtime: Runtime = module.load(data, fmt, options)
    except ModelLoadError as error:
        if declared and "MODEL_FORMAT" not in str(error):
            raise ModelLoadError(f"{error} (MODEL_FORMAT={fmt} says it is one: is it?)") from None
        raise
    return runtime
