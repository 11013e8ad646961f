"""Prometheus's own tools for tests: promtool (rule checks and unit tests) and the server itself.
Debian's `prometheus` package brings both; .ci/run installs it and sets REQUIRE_PROMETHEUS, so a
missing binary fails CI instead of skipping the tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian package `prometheus`)"
        if os.environ.get("REQUIRE_PROMETHEUS"):
            pytest.fail(f"REQUIRE_PROMETHEUS is set but {message}")
        pytest.skip(message)
    return found


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, cwd=cwd)


def write_rules(groups: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def check_expressions(expressions: dict[str, str], directory: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no expression check of its own: each expression becomes a recording rule."""
    rules = [{"record": f"check:{re.sub(r'[^a-zA-Z0-9_]', '_', name)}", "expr": expr}
             for name, expr in expressions.items()]
    return promtool("check", "rules", str(write_rules([{"name": "expressions", "rules": rules}],
                                                      directory / "expressions.yaml")))
