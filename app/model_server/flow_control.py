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
    and the transport reads again only once no reason remains."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons: set[PauseReason] = set()

    def pause(self, reason: PauseReason) -> None:
        if not self._reasons:
            self._transport.pause_reading()
        self._reasons.add(reason)

    def resume(self, reason: PauseReason) -> None:
        if not self._reasons or reason not in self._reasons:  # asked once per request: the cheap test first
            return
        self._reasons.discard(reason)
        if not self._reasons and not self._transport.is_closing():
            self._transport.resume_reading()

    @property
    def reading(self) -> bool:
        return not self._reasons

    @property
    def writing_paused(self) -> bool:
        return bool(self._reasons) and PauseReason.CLIENT_NOT_READING in self._reasons
