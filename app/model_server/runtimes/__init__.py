"""The model runtimes, one module per kind, behind the contract in base.py, and how the server
chooses one: MODEL_FORMAT when set, else the file's extension, else (for `.bst`, which XGBoost and
LightGBM both use) the file's first bytes.

Each runtime module is imported only when its kind is served: a server of an ONNX model never
imports scikit-learn (about a second of start-up), nor XGBoost or LightGBM.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

from model_server.errors import ModelLoadError
from model_server.runtimes.base import LoadOptions, Runtime

Format = Literal["pickle", "skops", "xgboost", "lightgbm", "onnx"]
FORMATS: tuple[Format, ...] = ("pickle", "skops", "xgboost", "lightgbm", "onnx")
# The runtime module that reads each format.
MODULES: dict[Format, str] = {"pickle": "sklearn", "skops": "sklearn", "xgboost": "xgboost",
                              "lightgbm": "lightgbm", "onnx": "onnx"}
SUFFIXES: dict[str, Format] = {".pkl": "pickle", ".pickle": "pickle", ".joblib": "pickle", ".skops": "skops",
                               ".ubj": "xgboost", ".json": "xgboost", ".txt": "lightgbm", ".onnx": "onnx"}
AMBIGUOUS = ".bst"  # XGBoost's and LightGBM's (and MLServer's default file name for both)


def artifact_format(path: Path, declared: Format | Literal["auto"], data: bytes) -> Format:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if suffix == AMBIGUOUS:
        if data.startswith(b"tree\n"):  # LightGBM's text models begin with this line
            return "lightgbm"
        if data.lstrip()[:1] == b"{":  # XGBoost's UBJSON and JSON are both objects
            return "xgboost"
        raise ModelLoadError(
            f"cannot tell whether {path} is an XGBoost or a LightGBM model: it is neither a LightGBM text model nor "
            "XGBoost UBJSON or JSON (an old XGBoost binary model? XGBoost >= 3.1 cannot read those: re-save it as "
            ".ubj); set MODEL_FORMAT=xgboost|lightgbm")
    raise ModelLoadError(
        f"cannot tell the format of {path} from its extension; use one of "
        f"{', '.join(sorted([*SUFFIXES, AMBIGUOUS]))} or set MODEL_FORMAT={'|'.join(FORMATS)}")


def load(data: bytes, fmt: Format, declared: bool, options: LoadOptions) -> Runtime:
    module = importlib.import_module(f"model_server.runtimes.{MODULES[fmt]}")
    try:
        runtime: Runtime = module.load(data, fmt, options)
    except ModelLoadError as error:
        if declared and "MODEL_FORMAT" not in str(error):
            raise ModelLoadError(f"{error} (MODEL_FORMAT={fmt} says it is one: is it?)") from None
        raise
    return runtime
