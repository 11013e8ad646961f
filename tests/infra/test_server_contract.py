"""The deploy boundary: the server's settings are built from the environment the program gives
the container, so the bounds declared on both sides (stack settings, server settings) cannot drift."""

from __future__ import annotations

import os
from typing import Any

import pytest

from infra.settings import ModelServiceSettings
from model_server.settings import ServerSettings
from review.records import Synthesis
from tests.support.stacks import VARIANTS, synthesized_variant, synthesized_with


def container_environment(synthesis: Synthesis) -> dict[str, str]:
    """The model container's environment, from whatever runs the pods (a Rollout, or a Deployment
    when canaries are off)."""
    (workload,) = [record for kind in ("Rollout", "Deployment")
                   for record in synthesis.objects(kind, namespace="model-serving")
                   if record.get("spec", "template") is not None]
    (container,) = workload.get("spec", "template", "spec", "containers")
    return {variable["name"]: variable["value"] for variable in container["env"]}


def server_settings(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ServerSettings:
    for name in [name for name in os.environ if name.startswith("MODEL_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return ServerSettings()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_server_accepts_every_stacks_environment(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    synthesis = synthesized_variant(variant)
    environment = container_environment(synthesis)
    assert {name for name in environment if not name.startswith("MODEL_")} == set()
    settings = server_settings(environment, monkeypatch)
    assert str(settings.max_batch_size) == environment["MODEL_MAX_BATCH_SIZE"]
    assert settings.name == synthesis.outputs["modelName"]


def bound(field: str, which: str) -> Any:
    """The stack setting's own lower or upper bound (ge/le), read from the model."""
    for constraint in ModelServiceSettings.model_fields[field].metadata:
        if hasattr(constraint, which):
            return getattr(constraint, which)
    raise LookupError(field)


@pytest.mark.parametrize("which", ["ge", "le"])
def test_the_server_accepts_the_stack_settings_at_their_bounds(which: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fields = ("max_batch_size", "max_batch_wait_ms", "prediction_log_sample_rate")
    model = {ModelServiceSettings.model_fields[f].alias or f: bound(f, which) for f in fields}
    # A batch window at its bound needs a queue-wait objective above it (the settings refuse it otherwise).
    synthesis = synthesized_with("dev", {"modelService": {"replicas": 1, "minReplicas": 1, "maxReplicas": 2, **model},
                                   "observability": {"queueWaitSloMs": 2000}})
    settings = server_settings(container_environment(synthesis), monkeypatch)
    assert settings.max_batch_size == bound("max_batch_size", which)
    assert settings.max_batch_wait_ms == pytest.approx(bound("max_batch_wait_ms", which))
    assert settings.prediction_log_sample_rate == pytest.approx(bound("prediction_log_sample_rate", which))


def test_the_objectives_the_settings_allow_stay_under_the_servers_highest_histogram_bucket() -> None:
    """The settings refuse an SLO at or above this bound; it must be the server's real one."""
    from infra.workload.contract import HIGHEST_LATENCY_BUCKET_S
    from model_server.metrics import LATENCY_BUCKETS

    assert LATENCY_BUCKETS[-1] == HIGHEST_LATENCY_BUCKET_S
