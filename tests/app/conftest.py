"""Fixtures of the server tests; the helpers they use are in tests/support/server.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# First, as `python -m model_server` imports it first: it holds OpenMP at one thread in this process,
# so that no library starts a pool a probe process (runtimes/base.py, in_child) would deadlock on.
import model_server  # noqa: F401
from tests.support.server import Server, start_server
from train import train


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server (2 workers, small body limit) for tests that do not change settings."""
    directory = tmp_path_factory.mktemp("server")
    running = start_server(directory, MODEL_WORKERS="2", MODEL_MAX_BODY_BYTES="65536",
                           MODEL_REQUEST_TIMEOUT_S="1", MODEL_PREDICTION_LOG_DIR=str(directory),
                           MODEL_PREDICTION_LOG_SAMPLE_RATE="1.0")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def model() -> Any:
    return train()
