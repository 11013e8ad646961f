"""The post-deployment smoke test, against a real server process."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from delivery.smoke import main
from tests.support.server import Server, start_server


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


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on: bound (so no other process can take it) and never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


def test_fails_when_nothing_answers_in_time(closed_port: int, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([f"http://127.0.0.1:{closed_port}", "--timeout", "1"]) == 1
    assert "not ready within 1 s" in capsys.readouterr().err
