"""Open Inference Protocol (KServe V2) and KServe V1 bodies: decode and validate, encode.

Decoding turns a body into a (rows, n_features) float64 array the model can take, or
raises BadRequest naming the field and what was expected. Encoding supports JSON and
the binary tensor extension the Triton/KServe HTTP clients use by default
(https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from model_server.datatypes import BYTES, NUMERIC_DTYPES, datatype_of
from model_server.errors import BadRequest
from model_server.model import Model, validate_rows

BINARY_HEADER = "inference-header-content-length"
# JSON values of these kinds may appear in a tensor of each datatype.
_JSON_KINDS = {"BOOL": "b", "FP16": "iuf", "FP32": "iuf", "FP64": "iuf"}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: np.ndarray
    outputs: dict[str, bool]  # output name → send as binary data


def _loads(body: bytes | memoryview) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None


def _field(document: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = document.get(key)
    if not isinstance(value, kind):
        got = "missing" if value is None else type(value).__name__
        raise BadRequest(f"{where}.{key}: expected {kind.__name__}, got {got}")
    return value


def _json_tensor(data: Any, datatype: str, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest(f"{where}.data: expected a list of numbers")
    try:
        array = np.array(data)
    except ValueError:
        raise BadRequest(f"{where}.data: rows have different lengths") from None
    if array.dtype.kind not in "biuf":
        raise BadRequest(f"{where}.data: expected only {datatype} numbers, found strings, nulls or nested objects")
    allowed = _JSON_KINDS.get(datatype, "iu")
    if array.size and array.dtype.kind not in allowed:
        kind = {"b": "booleans", "f": "fractional numbers", "i": "integers", "u": "integers"}[array.dtype.kind]
        raise BadRequest(f"{where}.data: datatype {datatype} cannot hold {kind}")
    if datatype[0] in "IU" and array.size:
        limits = np.iinfo(NUMERIC_DTYPES[datatype])
        if array.min() < limits.min or array.max() > limits.max:
            raise BadRequest(f"{where}.data: values outside the range of {datatype}")
    return array


def _binary_tensor(chunk: memoryview, datatype: str, count: int, where: str) -> np.ndarray:
    dtype = NUMERIC_DTYPES[datatype]
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"{where}.parameters.binary_data_size: {len(chunk)} bytes cannot hold "
                         f"{count} {datatype} values ({count * dtype.itemsize} bytes)")
    return np.frombuffer(chunk, dtype=dtype)


def _as_rows(model: Model, array: np.ndarray, shape: list[int], where: str) -> np.ndarray:
    """Check the declared shape against the model and the data, and return float64 rows."""
    expected = math.prod(shape)
    if array.size != expected:
        raise BadRequest(f"{where}: shape {shape} needs {expected} values, data has {array.size}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise BadRequest(f"{where}: nested data has shape {list(array.shape)}, but shape says {shape}")
    rows = array.reshape(shape).astype(np.float64, copy=False)  # _check_shape made it [rows, features]
    validate_rows(model, rows, f"{where}.data")
    return rows


def _check_shape(model: Model, declared: Any, where: str) -> list[int]:
    features = model.n_features
    # bool is an int to Python, not to the protocol.
    if not isinstance(declared, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in declared):
        raise BadRequest(f"{where}.shape: expected a list of non-negative integers, got {declared!r}")
    shape: list[int] = [1, *declared] if len(declared) == 1 else declared
    if len(shape) != 2 or shape[1] != features:
        raise BadRequest(f"{where}.shape: model '{model.name}' takes [rows, {features}] "
                         f"({features} features per row), got {shape}")
    if shape[0] == 0:
        raise BadRequest(f"{where}.shape: the tensor has no rows")
    return shape


def decode_v2(model: Model, body: bytes, header_length: int | None) -> InferRequest:
    """A V2 infer request, JSON or with the binary tensor extension."""
    view = memoryview(body)
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length: {header_length} is not within the "
                             f"{len(body)}-byte body")
        document, binary = _loads(view[:header_length]), view[header_length:]
    else:
        document, binary = _loads(body), view[:0]
    if not isinstance(document, dict):
        raise BadRequest("request body: expected a JSON object with 'inputs'")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("id: expected a string")
    inputs = _field(document, "inputs", list, "request")
    if len(inputs) != 1:
        raise BadRequest(f"inputs: model '{model.name}' takes 1 input tensor of shape [-1, {model.n_features}], "
                         f"got {len(inputs)}")
    tensor, where = inputs[0], "inputs[0]"
    if not isinstance(tensor, dict):
        raise BadRequest(f"{where}: expected an object with name, shape, datatype and data")
    _field(tensor, "name", str, where)
    datatype = _field(tensor, "datatype", str, where)
    if datatype not in NUMERIC_DTYPES:
        raise BadRequest(f"{where}.datatype: model '{model.name}' takes numbers "
                         f"({', '.join(NUMERIC_DTYPES)}), got {datatype!r}")
    shape = _check_shape(model, tensor.get("shape"), where)
    parameters = tensor.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None:
        if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0:
            raise BadRequest(f"{where}.parameters.binary_data_size: expected a non-negative integer")
        if binary_size != len(binary):
            raise BadRequest(f"{where}.parameters.binary_data_size: says {binary_size} bytes, "
                             f"the body carries {len(binary)} after the JSON header")
        array = _binary_tensor(binary, datatype, math.prod(shape), where)
    else:
        if len(binary):
            raise BadRequest(f"body: {len(binary)} bytes of binary data, but no input declares binary_data_size")
        if "data" not in tensor:
            raise BadRequest(f"{where}.data: missing (or give parameters.binary_data_size)")
        array = _json_tensor(tensor["data"], datatype, where)
    rows = _as_rows(model, array, shape, where)
    return InferRequest(request_id, rows, _requested_outputs(model, document))


def _requested_outputs(model: Model, document: dict[str, Any]) -> dict[str, bool]:
    parameters = document.get("parameters")
    binary_default = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = document.get("outputs")
    if requested is None:
        return dict.fromkeys(model.outputs, binary_default)
    if not isinstance(requested, list) or not requested:
        raise BadRequest("outputs: expected a non-empty list of {\"name\": ...} objects")
    selected: dict[str, bool] = {}
    for index, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in model.outputs:
            raise BadRequest(f"outputs[{index}].name: model '{model.name}' has outputs "
                             f"{', '.join(model.outputs)}, got {name!r}")
        if name in selected:
            raise BadRequest(f"outputs[{index}].name: {name!r} is requested twice")
        output_parameters = output.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise BadRequest(f"outputs[{index}].parameters: expected an object, got {type(output_parameters).__name__}")
        selected[name] = bool(output_parameters.get("binary_data", binary_default))
    return selected


def encode_v2(model: Model, request: InferRequest, results: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    outputs: list[dict[str, Any]] = []
    binary_parts: list[bytes] = []
    for name, binary in request.outputs.items():
        array = results[name]
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary and datatype != BYTES:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary_parts.append(raw)
        else:
            entry["data"] = jsonable(array.ravel())
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        document["id"] = request.id
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary_parts:
        return header, None
    return b"".join([header, *binary_parts]), len(header)


def decode_v1(model: Model, body: bytes) -> np.ndarray:
    document = _loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise BadRequest("instances: expected {\"instances\": [[feature, ...], ...]}")
    instances = document["instances"]
    if not instances:
        raise BadRequest("instances: the list is empty")
    array = _json_tensor(instances, "FP64", "instances")
    if array.ndim != 2 or array.shape[1] != model.n_features:
        raise BadRequest(f"instances: model '{model.name}' takes rows of {model.n_features} numbers, "
                         f"got an array of shape {list(array.shape)}")
    rows = array.astype(np.float64, copy=False)
    validate_rows(model, rows, "instances")
    return rows


def encode_v1(predictions: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": jsonable(predictions)}, option=orjson.OPT_SERIALIZE_NUMPY)


def jsonable(array: np.ndarray) -> np.ndarray | list[Any]:
    """orjson writes numeric arrays natively (fast); labels such as strings become a list."""
    if array.dtype.kind in "biuf":
        return array
    return [value if isinstance(value, (int, float, bool)) else str(value) for value in array.tolist()]
