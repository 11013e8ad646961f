"""ONNX: a graph in an `.onnx` file, run by ONNX Runtime. https://onnxruntime.ai/docs/api/python/

What the server says about the model comes from the session: every named input and output, its
datatype, and its shape, with dynamic dimensions as -1. Requests must name their inputs; a
missing, extra or wrongly typed input is a 400 naming it (the datatype must be the input's own:
ONNX Runtime does not cast). Outputs that are not tensors (a ZipMap's list of maps) cannot travel
as OIP tensors and are refused at start: convert with skl2onnx's `options={"zipmap": False}`.
bfloat16 inputs are refused at start too: numpy has no bfloat16 type to hand ONNX Runtime.

Safety. The file is data (a protobuf), not code. A graph that needs a newer ONNX IR or opset
version than this ONNX Runtime supports is refused (exit 1), as is a truncated or corrupt file.

Devices: CUDA through `onnxruntime-gpu`'s CUDAExecutionProvider (the CUDA image). ONNX Runtime
falls back to the CPU silently when the provider cannot start, so the session's providers are
checked after it is created (session.get_providers()). A working CUDA provider does not mean the
graph runs on the GPU: the ai.onnx.ml operators (tree ensembles, linear classifiers, ZipMap) have
CPU kernels only (https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html).
With MODEL_DEVICE=cuda the server refuses such a graph at start, naming its operators, and creates
CUDA sessions with `session.disable_cpu_ep_fallback`, so any other node without a CUDA kernel is
refused too instead of running on the CPU; `auto` chooses the CPU for them, saying why.

Thread-safety: InferenceSession.run is thread-safe (ONNX Runtime's docs: several threads may call
Run on one session). The server runs it from one thread per worker, with `intra_op_num_threads` =
MODEL_THREADS (workers x threads <= CPUs). Each worker creates its own session after the fork
(thread pools and CUDA contexts do not survive one); the supervisor's session, made to validate and
describe the model, has no thread pool and is dropped before forking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from model_server.datatypes import NUMERIC_DTYPES
from model_server.errors import ModelLoadError
from model_server.runtimes.base import (
    Device,
    Inputs,
    InputSpec,
    LoadOptions,
    Runtime,
    TensorSpec,
    gpu_absent,
    in_child,
    library_message,
)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ML_DOMAIN = "ai.onnx.ml"  # operators with CPU kernels only
# ONNX Runtime's type strings (NodeArg.type) and the OIP datatypes they are.
DATATYPES = {"tensor(bool)": "BOOL", "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
             "tensor(int64)": "INT64", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
             "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(float16)": "FP16",
             "tensor(float)": "FP32", "tensor(double)": "FP64"}


# -- the graph's operators, read from the protobuf wire format ------------------------------------
# The `onnx` package (80 MB with its protobuf classes) is not in the image: the few fields needed
# (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4 and domain = 7, and the
# subgraphs of If/Loop/Scan in AttributeProto.g = 6 and .graphs = 11; onnx/onnx.proto) are read here.

def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(buffer: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(field number, bytes) of each length-delimited field of one message; other fields are skipped."""
    position = 0
    while position < len(buffer):
        key, position = _varint(buffer, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _varint(buffer, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            length, position = _varint(buffer, position)
            if position + length > len(buffer):
                raise ValueError("a field runs past the end of the file")
            yield key >> 3, buffer[position:position + length]
            position += length
        else:
            raise ValueError(f"wire type {wire_type} is not protobuf")


def _graph_operators(graph: memoryview) -> Iterator[tuple[str, str]]:
    for number, node in _fields(graph):
        if number != 1:
            continue
        op_type = domain = ""
        for field, value in _fields(node):
            if field == 4:
                op_type = bytes(value).decode()
            elif field == 7:
                domain = bytes(value).decode()
            elif field == 5:
                for attribute_field, subgraph in _fields(value):
                    if attribute_field in (6, 11):
                        yield from _graph_operators(subgraph)
        yield domain, op_type


def operators(data: bytes) -> set[tuple[str, str]]:
    """(domain, op_type) of every node of the model's graph and its subgraphs."""
    found: set[tuple[str, str]] = set()
    for number, graph in _fields(memoryview(data)):
        if number == 7:
            found.update(_graph_operators(graph))
    return found


def cpu_only_operators(data: bytes) -> list[str]:
    return sorted(f"{domain}.{op_type}" for domain, op_type in operators(data) if domain == ML_DOMAIN)


# -- sessions ---------------------------------------------------------------------------------------

def session_options(threads: int, cuda: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads spin by default, taking CPU from the worker's event loop and its neighbours.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if cuda:
        # A node without a CUDA kernel fails the session instead of running on the CPU unseen.
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return options


def create_session(data: bytes, threads: int, device: Device) -> ort.InferenceSession:
    # CUDA alone: ONNX Runtime adds the CPU provider itself, and refuses a session that lists it
    # explicitly while CPU fallback is disabled ("Conflicting session configuration: explicitly added
    # the CPU EP", onnxruntime/core/session/inference_session.cc).
    providers = [CUDA] if device == "cuda" else [CPU]
    return ort.InferenceSession(data, session_options(threads, device == "cuda"), providers=providers)


def _cuda_probe(data: bytes) -> str | None:
    """In a probe process: does a CUDA session of this graph really run on the GPU? (None: yes)."""
    try:
        session = create_session(data, 1, "cuda")
    except Exception as error:
        return f"ONNX Runtime cannot create a CUDA session of this graph ({library_message(error)})"
    providers = session.get_providers()
    if providers[:1] != [CUDA]:
        return f"the session's providers are {providers}: the CUDA provider did not start"
    return None


def resolve_device(data: bytes, requested: str) -> tuple[Device, str]:
    if requested == "cpu":
        return "cpu", ""
    reasons = []
    cpu_ops = cpu_only_operators(data)
    if cpu_ops:
        reasons.append(f"the graph has operators ONNX Runtime runs only on the CPU: {', '.join(cpu_ops)}")
    if CUDA not in ort.get_available_providers():
        reasons.append(f"this onnxruntime {ort.__version__} has no {CUDA} (the CUDA image installs onnxruntime-gpu)")
    absent = gpu_absent()
    if absent:
        reasons.append(absent)
    if not reasons:
        probe = in_child(lambda: _cuda_probe(data), "ONNX Runtime's CUDA probe")
        if probe:
            reasons.append(probe)
    if not reasons:
        return "cuda", ""
    if requested == "cuda":
        fix = ("export the model with core operators only, or serve it with MODEL_DEVICE=cpu" if cpu_ops
               else "set MODEL_DEVICE=auto or cpu to serve on the CPU")
        raise ModelLoadError(f"MODEL_DEVICE=cuda, but this model cannot run on CUDA here: {'; '.join(reasons)}; {fix}")
    return "cpu", "; ".join(reasons)


def _shape(node: Any) -> list[int]:
    # A dynamic dimension is None or a symbolic name ("batch"); the protocol says -1.
    return [n if isinstance(n, int) and n >= 0 else -1 for n in node.shape]


def _datatype(node: Any, role: str, options: LoadOptions) -> str:
    datatype = DATATYPES.get(node.type)
    if datatype is None:
        hint = (" (a ZipMap: convert with skl2onnx's options={'zipmap': False})" if node.type.startswith("seq(")
                else "; the server takes and gives numeric tensors only")
        raise ModelLoadError(f"model file {options.path}: {role} '{node.name}' is {node.type}, which the Open "
                             f"Inference Protocol tensors this server speaks cannot carry{hint}")
    return datatype


def load(data: bytes, fmt: str, options: LoadOptions) -> Runtime:
    try:
        cpu_only_operators(data)  # the protobuf parses at all
        session = create_session(data, 1, "cpu")
    except (ValueError, IndexError, UnicodeDecodeError, ort_errors.InvalidProtobuf) as error:
        raise ModelLoadError(f"model file {options.path} is truncated or corrupt, or not ONNX "
                             f"({library_message(error)})") from None
    except ort_errors.Fail as error:
        message = library_message(error)
        if "ir version" in message.lower() or "opset" in message.lower():
            raise ModelLoadError(
                f"model file {options.path} needs a newer ONNX Runtime than this server's {ort.__version__} "
                f"({message}): export it with an older opset, or build the image with a newer onnxruntime") from None
        raise ModelLoadError(f"model file {options.path} is not a graph ONNX Runtime can run ({message})") from None
    return OnnxRuntime(data, session, options)


class OnnxRuntime(Runtime):
    kind = "onnx"
    platform = "onnxruntime_onnx"  # Triton's and KServe's name for it
    names_inputs = True

    def __init__(self, data: bytes, session: ort.InferenceSession, options: LoadOptions) -> None:
        self.data = data
        self.threads = options.threads
        self.inputs = [InputSpec(node.name, datatype, _shape(node), NUMERIC_DTYPES[datatype],
                                 accepts=frozenset({datatype}), nan_ok=True, inf_ok=True)
                       for node in session.get_inputs()
                       for datatype in [_datatype(node, "input", options)]]
        self.outputs = {node.name: TensorSpec(node.name, _datatype(node, "output", options), _shape(node))
                        for node in session.get_outputs()}
        self.v1_output = next(iter(self.outputs))
        self.device, self.device_reason = resolve_device(data, options.device)
        self.session: ort.InferenceSession | None = None  # each worker's own, from warm_up

    def predict(self, inputs: Inputs, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        assert self.session is not None, "warm_up creates the session"
        names = list(outputs)
        try:
            results = self.session.run(names, inputs)
        except ort_errors.InvalidArgument as error:  # ONNX Runtime refuses the input (e.g. a dimension)
            raise ValueError(library_message(error)) from None
        return dict(zip(names, (np.asarray(result) for result in results), strict=True))

    def warm_up(self) -> None:
        self.session = create_session(self.data, self.threads, self.device)
        if self.device == "cuda" and self.session.get_providers()[:1] != [CUDA]:
            raise RuntimeError(f"the worker's session has providers {self.session.get_providers()}, not {CUDA}")
        if self.batchable:  # a dynamic dimension besides the rows has no size to warm up with
            super().warm_up()
