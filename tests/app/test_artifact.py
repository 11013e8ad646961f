"""The committed model artifact is what app/train.py produces, and its pin matches it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.support.server import APP_DIR


def test_training_is_deterministic_and_reproduces_the_committed_artifact(tmp_path: Path) -> None:
    out = tmp_path / "model.pkl"
    subprocess.run([sys.executable, str(APP_DIR / "train.py"), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == (APP_DIR / "model.pkl").read_bytes(), "retrain with `make model` and commit"
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (APP_DIR / "model.pkl.sha256").read_text().split()[0] == digest
