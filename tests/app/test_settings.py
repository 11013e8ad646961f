"""The server's settings, read from MODEL_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from model_server.settings import ServerSettings, settings_problems

PIN = "0" * 64


@pytest.fixture(autouse=True)
def no_model_variables(monkeypatch: pytest.MonkeyPatch) -> None:


    for key in list(os.environ):
        if key.upper().startswith("MODEL_"):
            monkeypatch.delenv(key)


def test_each_field_is_read_from_its_variable_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SHA256", PIN)
    monkeypatch.setenv("MODEL_PATH", "/models/iris.onnx")
    monkeypatch.setenv("model_port", "9000")
    monkeypatch.setenv("Model_Access_Log", "false")
    monkeypatch.setenv("MODEL_MAX_BATCH_WAIT_MS", "2.5")
    monkeypatch.setenv("MODEL_NOT_A_SETTING", "whatever")  # other MODEL_* variables are not the server's
    settings = ServerSettings()
    assert (settings.sha256, settings.path, settings.port) == (PIN, Path("/models/iris.onnx"), 9000)
    assert settings.access_log is False and settings.max_batch_wait_ms == 2.5
    assert settings.threads is None and settings.host == "0.0.0.0"  # unset: the defaults


def test_a_list_is_json_and_anything_else_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SHA256", PIN)
    monkeypatch.setenv("MODEL_SKOPS_TRUSTED_TYPES", '["numpy.float64", "collections.OrderedDict"]')
    assert ServerSettings().skops_trusted_types == ["numpy.float64", "collections.OrderedDict"]
    monkeypatch.setenv("MODEL_SKOPS_TRUSTED_TYPES", "numpy.float64")  # not JSON
    monkeypatch.setenv("MODEL_WORKERS", "0")
    with pytest.raises(ValidationError) as refused:
        ServerSettings()
    problems = settings_problems(refused.value)
    assert "MODEL_SKOPS_TRUSTED_TYPES: Input should be a valid list" in problems
    assert "MODEL_WORKERS: Input should be greater than or equal to 1" in problems


def test_values_given_to_the_constructor_come_before_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "from-environment")
    monkeypatch.setenv("MODEL_PORT", "9000")
    settings = ServerSettings(name="iris", sha256=PIN)
    assert (settings.name, settings.port) == ("iris", 9000)


def test_an_unpinned_model_is_refused_unless_development_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="MODEL_SHA256 is not set"):
        ServerSettings()
    monkeypatch.setenv("MODEL_ALLOW_UNPINNED", "true")
    assert ServerSettings().sha256 is None
