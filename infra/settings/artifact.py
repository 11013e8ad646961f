"""The model artifact a stack deploys (`modelService.model`, a file under app/), checked at config
time as the server checks it when it starts, so that a stack whose pods would never become ready is
refused before `pulumi up` declares anything:

- it is a file under app/, inside the image's build context (app/.dockerignore), and pinned by the
  `<file>.sha256` committed beside it (the pod's MODEL_SHA256, which the server enforces);
- its format is `modelService.format`, else told as the server tells it: the server's own rules, in
  app/model_server/formats.py, loaded here by path;
- on a GPU pool its runtime can use the GPU: scikit-learn and LightGBM cannot, and neither can an
  ONNX graph of `ai.onnx.ml` operators (tree ensembles, linear classifiers, ZipMap), which ONNX
  Runtime runs on CPU only: the server refuses them with MODEL_DEVICE=cuda.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Literal

from infra.settings.build_context import APP_DIR, context_files
from infra.settings.problems import Problem, problem, set_command

DEFAULT_MODEL = "model.pkl"
# Which runtimes can run on a GPU, and why the others cannot (app/model_server/runtimes/*.py).
GPU_RUNTIMES = frozenset({"xgboost", "onnx"})
CPU_ONLY_WHY = {"sklearn": "scikit-learn has no GPU support",
                "lightgbm": "the LightGBM wheel is built without CUDA"}
RUNTIME_NAMES = {"sklearn": "scikit-learn", "xgboost": "XGBoost", "lightgbm": "LightGBM", "onnx": "ONNX"}
# ONNX Runtime's traditional-ML operators: CPU kernels only (onnxruntime's OperatorKernels.md lists no
# CUDA kernel in this domain).
ONNX_ML_DOMAIN = "ai.onnx.ml"

Device = Literal["cpu", "cuda"]


def _server_formats() -> ModuleType:
    # The server's package imports numpy as it loads, and the program's environment has none of the
    # server's libraries; formats.py imports only the standard library (tests/app/test_formats.py).
    spec = importlib.util.spec_from_file_location("model_server_formats", APP_DIR / "model_server" / "formats.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_FORMATS = _server_formats()
FORMATS: tuple[str, ...] = _FORMATS.FORMATS
RUNTIMES: dict[str, str] = _FORMATS.RUNTIMES


@dataclass(frozen=True)
class ModelArtifact:
    """The artifact as it is deployed: the image's MODEL_FILE, the pod's MODEL_SHA256 and MODEL_FORMAT."""

    file: str  # relative to app/, with '/' (a Docker build argument and a path in the image)
    sha256: str
    format: str

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.format]


def pin_command(file: str) -> str:
    where = PurePosixPath("app", file)
    return f"(cd {where.parent} && sha256sum {where.name} > {where.name}.sha256)"


def _onnx_operators(path: Path) -> set[tuple[str, str]]:
    """(domain, operator) of every node of an ONNX model, its subgraphs and local functions included."""
    import onnx  # only for an ONNX model bound for a GPU pool: the import takes a while

    found: set[tuple[str, str]] = set()

    def walk(nodes: Iterable[Any]) -> None:
        for node in nodes:
            found.add((node.domain, node.op_type))
            for attribute in node.attribute:  # If, Loop and Scan carry graphs of their own
                subgraphs = [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]
                for graph in subgraphs:
                    walk(graph.node)

    model = onnx.load_model(str(path), load_external_data=False)
    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)
    return found


def _gpu_problems(artifact: ModelArtifact, path: Path, pool: str) -> Iterator[Problem]:
    kind = RUNTIME_NAMES[artifact.runtime]
    fix = (f"move it to a CPU pool ({set_command('modelService.pool', '<cpu pool>')}, and --path "
           "'modelService.gpus' 0), or deploy a model a GPU can run: XGBoost, or ONNX of core operators "
           "(e.g. examples/onnx-mlp/model.onnx)")
    if artifact.runtime not in GPU_RUNTIMES:
        yield problem(f"{artifact.file} is a {kind} model, which runs on CPU only ({CPU_ONLY_WHY[artifact.runtime]}), "
                      f"but pool '{pool}' is a GPU pool: the GPUs would idle", fix, "modelService.pool")
        return
    if artifact.runtime != "onnx":
        return
    try:
        operators = _onnx_operators(path)
    except Exception as error:  # onnx raises protobuf's DecodeError, or ValueError, on a damaged file
        yield problem(f"{artifact.file} cannot be read as an ONNX model ({type(error).__name__}: {error})",
                      "re-export it, then pin it again: " + pin_command(artifact.file), "modelService.model")
        return
    cpu_only = sorted(operator for domain, operator in operators if domain == ONNX_ML_DOMAIN)
    if cpu_only:
        yield problem(f"{artifact.file} uses {ONNX_ML_DOMAIN} operators ({', '.join(cpu_only)}), which ONNX Runtime "
                      f"runs on CPU only, but pool '{pool}' is a GPU pool: the server refuses such a graph on CUDA",
                      fix, "modelService.pool")


def located(file: str, app_dir: Path = APP_DIR) -> tuple[Path | None, list[Problem]]:
    """app/<file>, if it can be deployed as a file: under app/, in the build context, pinned. The
    problems' paths are relative to the key (modelService.model)."""
    key = "modelService.model"
    relative = PurePosixPath(file)
    app_root = app_dir.resolve()
    path = (app_dir / relative).resolve()
    if relative.is_absolute() or not path.is_relative_to(app_root) or path == app_root:
        return None, [problem(f"'{file}' is not a path under app/ (the image is built from app/ alone)",
                              f"copy the artifact into app/, e.g. app/models/, then "
                              f"{set_command(key, 'models/<file>')}")]
    file = path.relative_to(app_root).as_posix()
    if not path.is_file():
        return None, [problem(f"app/{file} does not exist",
                              "train the bundled ones with `make model`, or copy yours there (and pin it: "
                              f"{pin_command(file)})")]
    if path not in {candidate.resolve() for candidate in context_files(app_dir)}:
        return None, [problem(f"app/{file} is not in the image's build context (app/.dockerignore leaves it out)",
                              f"add the line !{file} to app/.dockerignore")]
    pin = path.with_name(f"{path.name}.sha256")
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    if not pin.is_file() or pin.read_text().split()[:1] != [sha256]:
        state = "is missing" if not pin.is_file() else "pins another file"
        return None, [problem(f"the pin app/{file}.sha256 {state} (app/{file} has sha256 {sha256}); the server "
                              "loads only the artifact its pin names",
                              f"if this is the model to serve, pin it: {pin_command(file)}")]
    return path, []


def inspect(file: str, declared_format: str | None, gpu_pool: str | None,
            app_dir: Path = APP_DIR) -> tuple[ModelArtifact | None, list[Problem]]:
    """The artifact at app/<file>, or the problems that stop it from being deployed. `gpu_pool` names
    the GPU pool the model is placed on (None: a CPU pool)."""
    path, problems = located(file, app_dir)
    if path is None:
        return None, [found.under("modelService.model") for found in problems]
    data = path.read_bytes()
    file = path.relative_to(app_dir.resolve()).as_posix()
    if declared_format is None:
        try:
            declared_format = _FORMATS.detect(PurePosixPath("app", file), data[:_FORMATS.HEAD_BYTES])
        except _FORMATS.UnknownFormat as unknown:
            return None, [problem(str(unknown), set_command("modelService.format", "|".join(unknown.candidates)),
                                  "modelService.format")]
    artifact = ModelArtifact(file=file, sha256=hashlib.sha256(data).hexdigest(), format=str(declared_format))
    problems = [] if gpu_pool is None else list(_gpu_problems(artifact, path, gpu_pool))
    return (None if problems else artifact), problems
