"""The artifact formats and how a file's format is told: by its extension, or by its first bytes
for `.bst`, which XGBoost and LightGBM both use.

Standard library only, and no import from the rest of the package: the Pulumi program loads this
file by itself to decide, at config time, what it deploys as the server will decide it (the
program's environment has none of the server's libraries; tests/app/test_formats.py holds this
module to that).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

Format = Literal["pickle", "skops", "xgboost", "lightgbm", "onnx"]
FORMATS: tuple[Format, ...] = ("pickle", "skops", "xgboost", "lightgbm", "onnx")
# The runtime (module of model_server.runtimes, and the `runtime` metric label) that reads each format.
RUNTIMES: dict[Format, str] = {"pickle": "sklearn", "skops": "sklearn", "xgboost": "xgboost",
                               "lightgbm": "lightgbm", "onnx": "onnx"}
SUFFIXES: dict[str, Format] = {".pkl": "pickle", ".pickle": "pickle", ".joblib": "pickle", ".skops": "skops",
                               ".ubj": "xgboost", ".json": "xgboost", ".txt": "lightgbm", ".onnx": "onnx"}
AMBIGUOUS = ".bst"  # XGBoost's and LightGBM's (and MLServer's default file name for both)
# Enough of a file to tell a `.bst` apart.
HEAD_BYTES = 64


class UnknownFormat(ValueError):
    """The file's format cannot be told; the message says why, and each caller names its own fix."""

    def __init__(self, message: str, candidates: tuple[Format, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


def detect(path: PurePath, head: bytes) -> Format:
    """The format of the artifact at `path`, whose first bytes are `head` (HEAD_BYTES suffice)."""
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if suffix == AMBIGUOUS:
        if head.startswith(b"tree\n"):  # LightGBM's text models begin with this line
            return "lightgbm"
        if head.lstrip()[:1] == b"{":  # XGBoost's UBJSON and JSON are both objects
            return "xgboost"
        raise UnknownFormat(
            f"cannot tell whether {path} is an XGBoost or a LightGBM model: it is neither a LightGBM text model nor "
            "XGBoost UBJSON or JSON (an old XGBoost binary model? XGBoost >= 3.1 cannot read those: re-save it as "
            ".ubj)", ("xgboost", "lightgbm"))
    raise UnknownFormat(f"cannot tell the format of {path} from its extension (known: "
                        f"{', '.join(sorted([*SUFFIXES, AMBIGUOUS]))})", FORMATS)
