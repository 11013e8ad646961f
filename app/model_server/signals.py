"""The signals that stop the server, shared by the supervisor and its workers.

The supervisor blocks these across fork and the worker unblocks them once its event loop
handles them, so a stop signal arriving in between is delivered late, never lost. That
handshake holds only if both sides name the same signals: they import them from here.
"""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
