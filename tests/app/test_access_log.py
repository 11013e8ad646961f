"""The access log's lines (app/model_server/logs.py): one JSON object per request, whatever the path
holds, written together at the flush."""

from __future__ import annotations

import json
import tempfile
import time

from model_server.logs import AccessLog


def lines_of(log: AccessLog) -> list[dict[str, object]]:
    with tempfile.TemporaryFile() as file:
        log.fd = file.fileno()
        log.flush()
        file.seek(0)
        return [json.loads(line) for line in file.read().splitlines()]


def test_each_request_is_one_json_line_with_its_fields() -> None:
    log = AccessLog(True, fd=2)
    before = time.time()
    assert log.request("POST", "/v2/models/iris/infer", "infer", 200, 0.0012344, 120, 98) is True  # schedule a flush
    assert log.request("HEAD", "/v2/health/live", "live", 200, 1.5, 0, 0) is False  # one flush for both
    first, second = lines_of(log)
    assert first == {"ts": first["ts"], "method": "POST", "path": "/v2/models/iris/infer", "endpoint": "infer",
                     "status": 200, "ms": 1.234, "bytes_in": 120, "bytes_out": 98}
    # The time is written to the millisecond, rounded: it may read up to half a millisecond either side.
    assert before - 0.0005 <= first["ts"] <= time.time() + 0.0005 and second["ts"] == first["ts"]
    assert second["ms"] == 1500.0 and second["method"] == "HEAD" and second["endpoint"] == "live"
    assert lines_of(log) == []  # flushed lines are gone


def test_a_path_with_quotes_backslashes_and_non_ascii_is_escaped() -> None:
    log = AccessLog(True, fd=2)
    odd = '/v2/models/"x"\\y/\u00e9\u00ff'
    for _ in range(2):  # written, then from the kept part of the line if it were kept
        log.request("GET", odd, "unknown", 404, 0.0001, 0, 60)
    assert [line["path"] for line in lines_of(log)] == [odd, odd]


def test_paths_that_name_no_endpoint_are_not_kept() -> None:
    log = AccessLog(True, fd=2)
    for n in range(1000):  # a client probing random paths
        log.request("GET", f"/probe/{n}", "unknown", 404, 0.0001, 0, 60)
    assert len(lines_of(log)) == 1000
    assert log._where == {}  # nothing of theirs is held by the worker


def test_a_disabled_log_writes_nothing() -> None:
    log = AccessLog(False, fd=2)
    assert log.request("GET", "/v2", "server_metadata", 200, 0.001, 0, 10) is False
    assert lines_of(log) == []
