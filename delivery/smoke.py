"""Smoke test of a deployed model endpoint: ready, then one real inference.

    python -m delivery.smoke https://<modelUrl> --model iris [--timeout 600]

A new load balancer's DNS name takes minutes to resolve, so readiness is retried until
the timeout. The inference uses the model's own metadata to build a valid request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


class SmokeTestFailed(Exception):
    pass


def _call(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_ready(base_url: str, timeout: float, interval: float = 5) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = _call(f"{base_url}/v2/health/ready")
            if status == 200:
                return
            last = f"HTTP {status}: {body}"
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(interval)
    raise SmokeTestFailed(f"{base_url} not ready within {timeout:g} s (last: {last})")


def infer_once(base_url: str, model: str) -> dict[str, Any]:
    status, metadata = _call(f"{base_url}/v2/models/{model}")
    if status != 200:
        raise SmokeTestFailed(f"model metadata: HTTP {status}: {metadata}")
    features = metadata["inputs"][0]["shape"][-1]
    request = {"id": "smoke-test",
               "inputs": [{"name": "input-0", "shape": [1, features], "datatype": "FP64", "data": [0.0] * features}]}
    status, answer = _call(f"{base_url}/v2/models/{model}/infer", request)
    if status != 200 or not answer.get("outputs") or answer.get("id") != "smoke-test":
        raise SmokeTestFailed(f"inference: HTTP {status}: {answer}")
    result: dict[str, Any] = answer
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--model", default="iris")
    parser.add_argument("--timeout", type=float, default=600)
    options = parser.parse_args(argv)
    base_url = options.url.rstrip("/")
    try:
        wait_ready(base_url, options.timeout)
        answer = infer_once(base_url, options.model)
    except SmokeTestFailed as failure:
        print(f"smoke test failed: {failure}", file=sys.stderr)
        return 1
    print(f"smoke test passed: {base_url} answered {[o['name'] for o in answer['outputs']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
