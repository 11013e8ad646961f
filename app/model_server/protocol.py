"""Open Inference Protocol (KServe V2) and KServe V1 bodies: decode and validate, encode.

Decoding turns a body into one array per model input, each of the dtype its runtime takes, or
raises BadRequest naming the field and what was expected. A model of one unnamed tabular input
(scikit-learn, XGBoost, LightGBM) takes a tensor of any name, V1 `instances` too; a model that
names its inputs (ONNX) must be sent each of them by name, of its own datatype. Encoding supports
JSON and the binary tensor extension the Triton/KServe HTTP clients use by default
(https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md).

FP16 is taken only as binary data, as KServe takes it. BF16 is refused: numpy has no bfloat16
type, and neither MLServer nor KServe takes it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import orjson

from model_server.datatypes import BYTES, NUMERIC_DTYPES, datatype_of
from model_server.errors import BadRequest
from model_server.model import Model
from model_server.runtimes.base import Inputs, InputSpec

BINARY_HEADER = "inference-header-content-length"
_NO_BINARY = memoryview(b"")  # the binary part of a JSON-only body
# JSON values of these kinds may appear in a tensor of each datatype.
_JSON_KINDS = {"BOOL": "b", "FP16": "iuf", "FP32": "iuf", "FP64": "iuf"}


class InferRequest(NamedTuple):  # a tuple: made once per request, read twice
    id: str | None
    inputs: Inputs  # by the model's input names
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


def validate_values(model: Model, spec: InputSpec, values: np.ndarray, where: str) -> None:
    """Reject values the model cannot take, naming the field (a client error, never a 500)."""
    if values.dtype.kind != "f" or (spec.nan_ok and spec.inf_ok):
        return
    if spec.nan_ok:
        if np.isinf(values).any():
            raise BadRequest(f"{where}: contains infinite values, which model '{model.name}' cannot take")
    elif not np.isfinite(values).all():
        raise BadRequest(f"{where}: contains NaN or infinite values, which model '{model.name}' cannot take")


def _as_input(model: Model, spec: InputSpec, array: np.ndarray, shape: list[int], where: str,
              from_json: bool = False) -> np.ndarray:
    """Check the data against the declared shape, and return it in the dtype the model takes."""
    expected = math.prod(shape)
    if array.size != expected:
        raise BadRequest(f"{where}: shape {shape} needs {expected} values, data has {array.size}")
    if array.ndim > 1 and list(array.shape) != shape:
        raise BadRequest(f"{where}: nested data has shape {list(array.shape)}, but shape says {shape}")
    values = array.reshape(shape).astype(spec.dtype, copy=False)
    # JSON has no NaN or infinity (orjson refuses them, and numbers too big for a double), and
    # JSON numbers cast to float64 stay finite: only a narrower cast (FP32, FP16) can make an infinity.
    if not (from_json and values.dtype.itemsize == 8):
        validate_values(model, spec, values, f"{where}.data")
    return values


def _fits(wanted: list[int], shape: list[int]) -> bool:
    """The shape has the wanted rank, and the wanted size in each dimension that is not dynamic (-1)."""
    return len(shape) == len(wanted) and all(want in (-1, got) for want, got in zip(wanted, shape, strict=True))


def _check_shape(model: Model, spec: InputSpec, declared: Any, where: str) -> list[int]:
    features = spec.features
    # The common case first, [rows, features] of a tabular input, in a few steps: what the checks
    # below would accept (exact ints: bool is an int to Python, not to the protocol).
    if features is not None and type(declared) is list and len(declared) == 2 and not model.runtime.names_inputs:
        rows, columns = declared
        if type(rows) is int and type(columns) is int and rows > 0 and columns == features:
            return declared
    if not isinstance(declared, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in declared):
        raise BadRequest(f"{where}.shape: expected a list of non-negative integers, got {declared!r}")
    if features is not None and not model.runtime.names_inputs:  # one tabular input; [features] is one row
        shape: list[int] = [1, *declared] if len(declared) == 1 else declared
        if len(shape) != 2 or shape[1] != features:
            raise BadRequest(f"{where}.shape: model '{model.name}' takes [rows, {features}] "
                             f"({features} features per row), got {shape}")
    else:
        shape = declared
        if not _fits(spec.shape, shape):
            raise BadRequest(f"{where}.shape: input '{spec.name}' of model '{model.name}' takes {spec.shape} "
                             f"(-1: any size), got {shape}")
    if shape and shape[0] == 0:
        raise BadRequest(f"{where}.shape: the tensor has no rows")
    return shape


def _check_datatype(model: Model, spec: InputSpec, tensor: dict[str, Any], where: str) -> str:
    datatype: str = _field(tensor, "datatype", str, where)
    if datatype in spec.accepts:
        return datatype
    if datatype == "BF16":
        raise BadRequest(f"{where}.datatype: BF16 is not taken (numpy has no bfloat16 type); send FP32, "
                         "or FP16 as binary data")
    if len(spec.accepts) > 1:
        accepted = [name for name in NUMERIC_DTYPES if name in spec.accepts]  # in the table's order
        raise BadRequest(f"{where}.datatype: model '{model.name}' takes numbers "
                         f"({', '.join(accepted)}), got {datatype!r}")
    raise BadRequest(f"{where}.datatype: input '{spec.name}' of model '{model.name}' is {spec.datatype}, "
                     f"got {datatype!r}")


class _BinaryData:
    """The body's bytes after the JSON header, handed out in order to the inputs that declare
    parameters.binary_data_size (the binary tensor extension's layout); the last of them must take
    exactly what is left."""

    def __init__(self, view: memoryview, tensors: list[Any]) -> None:
        self.view = view
        self.offset = 0
        self.tensors = tensors
        self.declared: int | None = None  # counted at the first binary input: JSON-only requests never pay for it

    def take(self, size: int, where: str) -> memoryview:
        left = len(self.view) - self.offset
        if self.declared is None:
            self.declared = sum(1 for tensor in self.tensors if isinstance(tensor, dict) and isinstance(
                parameters := tensor.get("parameters"), dict) and parameters.get("binary_data_size") is not None)
        self.declared -= 1
        if size > left or (self.declared == 0 and size != left):
            before = " and the inputs before it" if self.offset else ""
            raise BadRequest(f"{where}.parameters.binary_data_size: says {size} bytes, the body carries {left} "
                             f"after the JSON header{before}")
        chunk = self.view[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def check_all_taken(self) -> None:
        if self.offset != len(self.view):  # only when no input declared binary data
            raise BadRequest(f"body: {len(self.view)} bytes of binary data, but no input declares binary_data_size")


def _decode_tensor(model: Model, spec: InputSpec, tensor: dict[str, Any], binary: _BinaryData,
                   where: str) -> np.ndarray:
    datatype = _check_datatype(model, spec, tensor, where)
    shape = _check_shape(model, spec, tensor.get("shape"), where)
    parameters = tensor.get("parameters") or {}
    binary_size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if binary_size is not None:
        if not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size < 0:
            raise BadRequest(f"{where}.parameters.binary_data_size: expected a non-negative integer")
        array = _binary_tensor(binary.take(binary_size, where), datatype, math.prod(shape), where)
    else:
        if "data" not in tensor:
            raise BadRequest(f"{where}.data: missing (or give parameters.binary_data_size)")
        if datatype == "FP16":
            raise BadRequest(f"{where}.data: FP16 is taken only as binary data (parameters.binary_data_size), "
                             "as KServe takes it")
        return _as_input(model, spec, _json_tensor(tensor["data"], datatype, where), shape, where, from_json=True)
    return _as_input(model, spec, array, shape, where)


def _tensor_object(tensor: Any, where: str) -> dict[str, Any]:
    if not isinstance(tensor, dict):
        raise BadRequest(f"{where}: expected an object with name, shape, datatype and data")
    return tensor


def _decode_named(model: Model, tensors: list[Any], binary: _BinaryData) -> Inputs:
    """Every input of a model that names them, each once, by name."""
    specs = {spec.name: spec for spec in model.inputs}
    decoded: Inputs = {}
    first_rows: tuple[str, int] | None = None
    for index, tensor in enumerate(tensors):
        where = f"inputs[{index}]"
        name = _field(_tensor_object(tensor, where), "name", str, where)
        spec = specs.get(name)
        if spec is None:
            raise BadRequest(f"{where}.name: model '{model.name}' has no input {name!r}; its inputs are "
                             f"{', '.join(specs)}")
        if name in decoded:
            raise BadRequest(f"{where}.name: input {name!r} is given twice")
        array = decoded[name] = _decode_tensor(model, spec, tensor, binary, where)
        if model.runtime.batchable and array.ndim:
            if first_rows is None:
                first_rows = (where, len(array))
            elif len(array) != first_rows[1]:
                raise BadRequest(f"{where}.shape: {len(array)} rows, but {first_rows[0]} has {first_rows[1]}: the "
                                 "inputs of one request have the same number of rows")
    missing = [spec for name, spec in specs.items() if name not in decoded]
    if missing:
        listed = ", ".join(f"'{spec.name}' ({spec.datatype} {spec.shape})" for spec in missing)
        raise BadRequest(f"inputs: model '{model.name}' needs input{'s' if len(missing) > 1 else ''} {listed}, "
                         "which the request does not give")
    return decoded


def _decode_common(model: Model, document: Any) -> InferRequest | None:
    """The request most clients send, decoded in a few steps: one JSON tensor of FP32 or FP64 rows for a
    model of one tabular input, without parameters. Anything else, valid or not, is None, and the
    general decoder below takes the same parsed document from the start (so its answers, and its
    refusals, are the same, and no body is parsed twice)."""
    if type(document) is not dict:
        return None
    request_id = document.get("id")
    tensors = document.get("inputs")
    if (request_id is not None and type(request_id) is not str) or type(tensors) is not list or len(tensors) != 1:
        return None
    tensor = tensors[0]
    if type(tensor) is not dict or "parameters" in tensor or type(tensor.get("name")) is not str:
        return None
    spec = model.runtime.inputs[0]
    shape = tensor.get("shape")
    data = tensor.get("data")
    datatype = tensor.get("datatype")
    if (datatype not in _COMMON_DATATYPES or datatype not in spec.accepts or type(shape) is not list
            or len(shape) != 2 or type(data) is not list):
        return None
    rows, features = shape
    if type(rows) is not int or type(features) is not int or rows <= 0 or features != spec.features:
        return None
    try:
        values = np.array(data)
    except ValueError:
        return None
    if values.dtype.kind not in "iuf":
        return None
    if values.ndim != 2 or values.shape != (rows, features):  # flat data: rows after one another
        if values.ndim != 1 or values.size != rows * features:
            return None
        values = values.reshape(rows, features)
    if values.dtype is not spec.dtype:
        values = values.astype(spec.dtype)
        if values.dtype.itemsize != 8:  # see _as_input: only a narrower cast can make an infinity
            validate_values(model, spec, values, "inputs[0].data")
    return InferRequest(request_id, {spec.name: values}, _requested_outputs(model, document))


# The datatypes _decode_common takes (JSON numbers; FP16 is binary only); FP32 and FP64 tensors hold any JSON number.
_COMMON_DATATYPES = frozenset({"FP32", "FP64"})


def decode_v2(model: Model, body: bytes, header_length: int | None) -> InferRequest:
    """A V2 infer request, JSON or with the binary tensor extension."""
    runtime = model.runtime
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length: {header_length} is not within the "
                             f"{len(body)}-byte body")
        view = memoryview(body)
        document, binary_view = _loads(view[:header_length]), view[header_length:]
    else:
        document, binary_view = _loads(body), _NO_BINARY
        if not runtime.names_inputs and runtime.inputs[0].features is not None:
            common = _decode_common(model, document)
            if common is not None:
                return common
    if not isinstance(document, dict):
        raise BadRequest("request body: expected a JSON object with 'inputs'")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("id: expected a string")
    tensors = _field(document, "inputs", list, "request")
    binary = _BinaryData(binary_view, tensors)
    runtime = model.runtime
    if runtime.names_inputs:
        inputs = _decode_named(model, tensors, binary)
    else:
        spec = runtime.inputs[0]  # the one input of a runtime that does not name them
        if len(tensors) != 1:
            raise BadRequest(f"inputs: model '{model.name}' takes 1 input tensor of shape {spec.shape}, "
                             f"got {len(tensors)}")
        tensor = _tensor_object(tensors[0], "inputs[0]")
        _field(tensor, "name", str, "inputs[0]")
        inputs = {spec.name: _decode_tensor(model, spec, tensor, binary, "inputs[0]")}
    binary.check_all_taken()
    return InferRequest(request_id, inputs, _requested_outputs(model, document))


def _requested_outputs(model: Model, document: dict[str, Any]) -> dict[str, bool]:
    parameters = document.get("parameters")
    binary_default = bool(isinstance(parameters, dict) and parameters.get("binary_data_output"))
    requested = document.get("outputs")
    outputs = model.runtime.outputs
    if requested is None:
        return dict.fromkeys(outputs, binary_default)
    if type(requested) is list and len(requested) == 1:  # what most clients send: one output by name alone
        only = requested[0]
        if type(only) is dict and len(only) == 1 and type(name := only.get("name")) is str and name in outputs:
            return {name: binary_default}
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
        # orjson writes a shape tuple as a list
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": array.shape}
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


def decode_v1(model: Model, body: bytes) -> Inputs:
    document = _loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise BadRequest("instances: expected {\"instances\": [[feature, ...], ...]}")
    instances = document["instances"]
    if not instances:
        raise BadRequest("instances: the list is empty")
    if len(model.inputs) != 1:
        raise BadRequest(f"instances: model '{model.name}' takes {len(model.inputs)} inputs "
                         f"({', '.join(spec.name for spec in model.inputs)}): send them by name with V2 "
                         f"(/v2/models/{model.name}/infer)")
    (spec,) = model.inputs
    array = _json_tensor(instances, spec.datatype, "instances")
    features = spec.features
    if features is not None:
        if array.ndim != 2 or array.shape[1] != features:
            raise BadRequest(f"instances: model '{model.name}' takes rows of {features} numbers, "
                             f"got an array of shape {list(array.shape)}")
    elif not _fits(spec.shape, list(array.shape)):
        raise BadRequest(f"instances: model '{model.name}' takes instances of shape {spec.shape[1:]}, "
                         f"got an array of shape {list(array.shape)}")
    values = array.astype(spec.dtype, copy=False)
    validate_values(model, spec, values, "instances")
    return {spec.name: values}


def encode_v1(predictions: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": jsonable(predictions)}, option=orjson.OPT_SERIALIZE_NUMPY)


def jsonable(array: np.ndarray) -> np.ndarray | list[Any]:
    """orjson writes numeric arrays natively (fast); labels such as strings become a list."""
    if array.dtype.kind in "biuf":
        return array
    return [value if isinstance(value, (int, float, bool)) else str(value) for value in array.tolist()]
