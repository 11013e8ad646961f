"""When a connection reads from its client: one owner of the transport's reading, and the reasons
it is paused."""

from __future__ import annotations

import asyncio
import enum


class PauseReason(enum.Enum):
    """Why a connection is not reading from its client."""

    PIPELINED = enum.auto()  # more than MAX_PIPELINED requests are waiting for their answers
    CLIENT_NOT_READING = enum.auto()  # asyncio paused writing: the client does not read its answers
    REFUSED = enum.auto()  # a request was refused: nothing after it is read, ever


class FlowControl:
    """The one owner of a transport's reading, as uvicorn's FlowControl (protocols/http/flow_control.py),
    plus the reasons reading is paused: each is set and cleared where it arises, any number of times,
    and the transport reads again only once no reason remains. `reading` and `writing_paused` are
    attributes, kept as the reasons change: the connection reads them several times per request."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons: set[PauseReason] = set()
        self.reading = True
        self.writing_paused = False

    def pause(self, reason: PauseReason) -> None:
        if not self._reasons:
            self._transport.pause_reading()
        self._reasons.add(reason)
        self.reading = False
        self.writing_paused = PauseReason.CLIENT_NOT_READING in self._reasons

    def resume(self, reason: PauseReason) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        self.writing_paused = PauseReason.CLIENT_NOT_READING in self._reasons
        if not self._reasons:
            self.reading = True
            if not self._transport.is_closing():
                self._transport.resume_reading()
