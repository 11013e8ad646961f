"""Reference files the tests check against (Pulumi's project schema, AWS's IAM policies), found
in ../shared/reference beside the project or downloaded once from their upstream source into a
cache. Missing is a skip on a developer's machine without network, a failure in CI, where
REQUIRE_SHARED=1 is set."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import NoReturn

import pytest

from infra.settings import PROJECT_DIR
from review.rendering import CACHE_DIR

SHARED_REFERENCE = PROJECT_DIR.parent / "shared" / "reference"


def missing(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_SHARED"):
        pytest.fail(f"REQUIRE_SHARED is set but {reason}")
    pytest.skip(reason)


def reference_file(name: str, upstream: str) -> Path:
    for candidate in (SHARED_REFERENCE / name, CACHE_DIR.parent / "reference" / name):
        if candidate.is_file():
            return candidate
    cached = CACHE_DIR.parent / "reference" / name
    try:
        with urllib.request.urlopen(upstream, timeout=20) as response:
            content = response.read()
    except OSError as error:
        missing(f"{name} is not in {SHARED_REFERENCE} and {upstream} cannot be fetched ({error})")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(content)
    return cached
