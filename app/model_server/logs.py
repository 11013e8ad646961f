"""Server events (start-up, shutdown: one JSON line each), the access log (one JSON line per
request, no payloads) and the sampled prediction log."""

from __future__ import annotations

import os
import random
import select
import socket
import sys
import time
from pathlib import Path
from typing import IO

import numpy as np
import orjson

# Writes to a pipe up to this size are atomic, so lines of different workers never interleave.
PIPE_BUF = select.PIPE_BUF
MAX_CACHED_PATHS = 256


def log_event(event: str, **fields: object) -> None:
    """A line about the server itself (not a request) on stdout, written at once."""
    sys.stdout.buffer.write(orjson.dumps({"ts": round(time.time(), 3), "event": event, **fields}) + b"\n")
    sys.stdout.flush()


class AccessLog:
    """Lines are buffered and written once per event-loop pass: a few syscalls, not one per request."""

    def __init__(self, enabled: bool, fd: int | None = None) -> None:
        self.enabled = enabled
        self.fd = sys.stdout.fileno() if fd is None else fd
        self._lines: list[bytes] = []
        self._where: dict[tuple[str, str, str], bytes] = {}  # the method, path and endpoint part of a line
        self._ts = 0.0  # when the first of the lines waiting for the next flush was written

    def request(self, method: str, path: str, endpoint: str, status: int, seconds: float, bytes_in: int,
                bytes_out: int) -> bool:
        """Queue a request's line; True when the caller should schedule a flush. The line is one JSON
        object, formatted directly (one step per request): the method, path and endpoint are encoded
        by orjson once per distinct route and kept."""
        if not self.enabled:
            return False
        where = self._where.get((method, path, endpoint))
        if where is None:
            where = b'"method":%s,"path":%s,"endpoint":%s' % (orjson.dumps(method), orjson.dumps(path),
                                                              orjson.dumps(endpoint))
            # Paths come from clients: only a bounded number of those that name an endpoint are kept.
            if endpoint != "unknown" and len(self._where) < MAX_CACHED_PATHS:
                self._where[(method, path, endpoint)] = where
        first = not self._lines
        if first:  # the clock is read once per flush (a loop pass), as nginx caches its time per event-loop
            self._ts = time.time()  # iteration: the lines of one pass share the time the first was written
        # Times to the millisecond and microsecond: %.3f rounds as round(x, 3) does, at half its cost.
        self._lines.append(b'{"ts":%.3f,%s,"status":%d,"ms":%.3f,"bytes_in":%d,"bytes_out":%d}\n' % (
            self._ts, where, status, seconds * 1000, bytes_in, bytes_out))
        return first

    def flush(self) -> None:
        chunk: list[bytes] = []
        size = 0
        for line in self._lines:
            if size + len(line) > PIPE_BUF and chunk:
                os.write(self.fd, b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            os.write(self.fd, b"".join(chunk))
        self._lines.clear()


class PredictionLog:
    """Sampled inputs and outputs as JSON lines, one file per worker (no interleaving on a
    shared volume). Opened at start-up so a missing or read-only directory fails early."""

    def __init__(self, directory: Path | None, sample_rate: float) -> None:
        self.sample_rate = sample_rate if directory is not None else 0.0
        self._file: IO[bytes] | None = None
        if directory is not None and sample_rate > 0:
            path = directory / f"predictions-{socket.gethostname()}-{os.getpid()}.jsonl"
            try:
                self._file = path.open("ab")
            except OSError as error:
                raise OSError(f"prediction log {path} cannot be opened: {error.strerror} "
                              "(MODEL_PREDICTION_LOG_DIR must be a writable directory)") from None

    def sampled(self) -> bool:
        return self._file is not None and random.random() < self.sample_rate

    def write(self, model: str, version: str, request_id: str | None, inputs: np.ndarray | dict[str, np.ndarray],
              outputs: dict[str, np.ndarray]) -> None:
        if self._file is None:
            return
        self._file.write(orjson.dumps(
            {"ts": time.time(), "model": model, "version": version, "id": request_id, "inputs": inputs,
             "outputs": {name: value if value.dtype.kind in "biuf" else value.tolist()
                         for name, value in outputs.items()}},
            option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
