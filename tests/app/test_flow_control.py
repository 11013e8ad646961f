"""The connection's flow control (app/model_server/flow_control.py): idempotent, by reason, and never
resuming a transport that is closing."""

from __future__ import annotations

from model_server.flow_control import FlowControl, PauseReason
from tests.support.connection import FakeTransport


class CountingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")
        super().pause_reading()

    def resume_reading(self) -> None:
        self.calls.append("resume")
        super().resume_reading()


def test_flow_control_reads_again_only_once_every_reason_is_gone() -> None:
    transport = CountingTransport()
    flow = FlowControl(transport)  # type: ignore[arg-type]
    flow.pause(PauseReason.PIPELINED)
    flow.pause(PauseReason.PIPELINED)  # idempotent
    flow.pause(PauseReason.CLIENT_NOT_READING)
    assert transport.calls == ["pause"] and flow.writing_paused
    flow.resume(PauseReason.REFUSED)  # not a reason it was paused for
    flow.resume(PauseReason.CLIENT_NOT_READING)
    assert transport.calls == ["pause"] and not flow.reading and not flow.writing_paused
    flow.resume(PauseReason.PIPELINED)
    flow.resume(PauseReason.PIPELINED)
    assert transport.calls == ["pause", "resume"] and flow.reading and transport.reading


def test_flow_control_does_not_resume_a_closing_transport() -> None:
    transport = CountingTransport()
    flow = FlowControl(transport)  # type: ignore[arg-type]
    flow.pause(PauseReason.CLIENT_NOT_READING)
    transport.close()
    flow.resume(PauseReason.CLIENT_NOT_READING)
    assert transport.calls == ["pause"] and not flow.writing_paused
