"""Open Inference Protocol tensor datatypes: one table of name → numpy dtype, read both ways.

Decoding a request looks a datatype up by name; describing a model's outputs and encoding a
response looks the name up from an array's dtype. Both directions come from `NUMERIC_DTYPES`,
so they cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Little-endian, as the binary tensor extension lays tensors out on the wire.
NUMERIC_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
# Anything else (strings, objects) travels as BYTES.
BYTES = "BYTES"
# By kind and size, not by dtype: a big-endian array has the same datatype as a little-endian one.
_NAME_BY_KIND_AND_SIZE = {(dtype.kind, dtype.itemsize): name for name, dtype in NUMERIC_DTYPES.items()}
# The same names by dtype: one lookup for the native dtypes models answer with (every response asks).
_NAME_BY_DTYPE = {dtype: name for name, dtype in NUMERIC_DTYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    dtype = array.dtype
    return _NAME_BY_DTYPE.get(dtype) or _NAME_BY_KIND_AND_SIZE.get((dtype.kind, dtype.itemsize), BYTES)
