"""The post-deployment smoke test, against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.smoke import main
from tests.support.server import Server, free_port, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("smoke"))
    yield running
    running.stop()


def test_passes_against_a_ready_server(server: Server, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([f"http://127.0.0.1:{server.port}", "--model", "iris", "--timeout", "10"]) == 0
    assert "smoke test passed" in capsys.readouterr().out


def test_fails_for_the_wrong_model(server: Server, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([f"http://127.0.0.1:{server.port}", "--model", "nope", "--timeout", "10"]) == 1
    assert "model metadata: HTTP 404" in capsys.readouterr().err


def test_fails_when_nothing_answers_in_time(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([f"http://127.0.0.1:{free_port()}", "--timeout", "1"]) == 1
    assert "not ready within 1 s" in capsys.readouterr().err
