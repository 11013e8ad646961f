"""app/model_server/formats.py is read by the Pulumi program too (infra/settings/artifact.py), which
loads the file by itself in an environment without the server's libraries: it must import nothing
but the standard library, and the program must decide formats exactly as the server does."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from infra.settings import artifact
from model_server import formats, runtimes
from model_server.errors import ModelLoadError

FORMATS_FILE = Path(formats.__file__)


def test_formats_imports_only_the_standard_library() -> None:
    imported = set()
    for node in ast.walk(ast.parse(FORMATS_FILE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need the package"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_program_reads_the_servers_own_table() -> None:
    assert artifact.FORMATS == formats.FORMATS
    assert artifact.RUNTIMES == formats.RUNTIMES
    assert set(artifact.RUNTIME_NAMES) == set(formats.RUNTIMES.values())
    assert artifact.GPU_RUNTIMES | set(artifact.CPU_ONLY_WHY) == set(formats.RUNTIMES.values())


@pytest.mark.parametrize(("name", "head", "expected"), [
    ("model.ubj", b"{", "xgboost"), ("model.JSON", b"{", "xgboost"), ("model.txt", b"tree\n", "lightgbm"),
    ("model.bst", b"tree\nversion=v4", "lightgbm"), ("model.bst", b"  {L", "xgboost"), ("m.onnx", b"\x08", "onnx"),
    ("m.joblib", b"\x80", "pickle"), ("m.skops", b"PK", "skops"),
])
def test_the_server_decides_by_extension_then_header(tmp_path: Path, name: str, head: bytes, expected: str) -> None:
    assert runtimes.artifact_format(tmp_path / name, "auto", head) == expected
    assert runtimes.artifact_format(tmp_path / name, "onnx", head) == "onnx"  # MODEL_FORMAT wins


@pytest.mark.parametrize(("name", "candidates"), [("old.bst", "xgboost|lightgbm"),
                                                  ("model.bin", "pickle|skops|xgboost|lightgbm|onnx")])
def test_an_undecidable_file_names_model_format_and_its_choices(tmp_path: Path, name: str, candidates: str) -> None:
    with pytest.raises(ModelLoadError, match=re.escape(f"; set MODEL_FORMAT={candidates}") + "$"):
        runtimes.artifact_format(tmp_path / name, "auto", b"\x00\x01")
