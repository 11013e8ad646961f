"""Server settings: one typed class read from MODEL_* environment variables.

Read by a few lines here rather than by pydantic-settings, which did the same (names in any case, a
list as JSON) but whose import, with the sources it brings (dotenv, secrets, cloud vaults, a CLI
parser), cost the server's start-up about 0.1 s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model_server.formats import Format

ENV_PREFIX = "MODEL_"


class ServerSettings(BaseModel):
    """Every field is read from the environment variable MODEL_<FIELD> (e.g. MODEL_SHA256); values
    given to the constructor come first."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**environment_values(), **values})

    path: Path = Field(Path("model.pkl"), description=(
        "Model artifact: scikit-learn pickle (.pkl/.joblib) or skops (.skops), XGBoost (.ubj, .json), LightGBM "
        "text (.txt), ONNX (.onnx); .bst is XGBoost or LightGBM, told apart by its header."))
    format: Format | Literal["auto"] = Field(
        "auto", description="Artifact format (pickle, skops, xgboost, lightgbm, onnx); auto decides by file "
                            "extension, and by the header for .bst.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs. auto: CUDA only when the container has a GPU and the runtime "
                            "can use it (else CPU, saying why); cuda: refuse to start unless it can.")
    name: str = Field("model", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Model name in URLs.")
    version: str = Field("1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="Model version served.")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$",
        description="Pinned sha256 of the artifact; the server refuses any other file.")
    allow_unpinned: bool = Field(
        False, description="Local development only: serve without a pinned sha256 (logs a warning).")
    skops_trusted_types: list[str] = Field(
        default_factory=list,
        description="Extra types a skops artifact may contain beyond skops' defaults (never read from the artifact).")
    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535,
                      description="Port to listen on; 0 takes a free one, named in the model_loaded log line.")
    workers: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)), ge=1, le=64,
        description="Worker processes; defaults to the CPUs this process may run on.")
    threads: int | None = Field(
        None, ge=1, le=256, description="Library threads per worker (XGBoost nthread, LightGBM num_threads, ONNX "
                                         "Runtime intra-op threads); default: the CPUs divided by MODEL_WORKERS.")
    max_batch_size: int | None = Field(
        None, ge=1, le=65536,
        description="Most rows coalesced into one predict call; default 1024 on CPU, 8192 on CUDA (provisional).")
    max_batch_wait_ms: float | None = Field(
        None, ge=0, le=1000,
        description="How long a request may wait for others to share its batch (0: batch only what arrived "
                    "together); default 0 on CPU, 2 on CUDA (provisional).")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    max_connections: int = Field(
        1024, ge=1, le=65536,
        description="Connections one worker holds; at the limit the longest-idle one is closed, or a new one gets "
                    "503 when none is idle. Worst-case buffered request memory is about this times "
                    "(max_body_bytes + 16 KiB of headers).")
    request_timeout_s: float = Field(30.0, gt=0, description="A client must send a whole request within this time.")
    keepalive_timeout_s: float = Field(75.0, gt=0, description="Idle keep-alive connections are closed after this.")
    drain_s: float = Field(
        2.0, ge=0, description="After SIGTERM: keep serving (not ready, answering Connection: close) this long.")
    shutdown_timeout_s: float = Field(20.0, gt=0, description="After draining: most time to finish in-flight requests.")
    access_log: bool = Field(True, description="One JSON line per request on stdout (no payloads).")
    prediction_log_dir: Path | None = Field(
        None, description="Directory for sampled prediction logs (JSON lines of inputs and outputs); unset: off.")
    prediction_log_sample_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of requests whose inputs and outputs are logged.")
    metrics_dir: Path | None = Field(
        None, description="Where workers share Prometheus metrics; default: a fresh directory in /dev/shm.")

    @model_validator(mode="after")
    def _pinned(self) -> ServerSettings:
        if self.sha256 is None and not self.allow_unpinned:
            raise ValueError(
                "MODEL_SHA256 is not set: pin the artifact's sha256 (sha256sum model.pkl), "
                "or set MODEL_ALLOW_UNPINNED=true for local development only")
        return self


def environment_values() -> dict[str, Any]:
    """The MODEL_<FIELD> variables, by field, their names in any case. A list is written as JSON; text
    that is not JSON is handed on as it is, for validation to name the variable and what it expected."""
    by_name = {key.upper(): value for key, value in os.environ.items()}
    values: dict[str, Any] = {}
    for name, field in ServerSettings.model_fields.items():
        value = by_name.get(ENV_PREFIX + name.upper())
        if value is None:
            continue
        if get_origin(field.annotation) is list:
            try:
                values[name] = json.loads(value)
                continue
            except ValueError:
                pass
        values[name] = value
    return values


def settings_problems(error: ValidationError) -> str:
    """What is wrong with the MODEL_* environment, each problem named by its variable."""
    return "; ".join(f"MODEL_{'_'.join(str(p) for p in e['loc']).upper() or '*'}: {e['msg']}" for e in error.errors())
