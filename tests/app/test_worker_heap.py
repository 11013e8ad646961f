"""The garbage collector: off while the server starts, on (with the loaded heap frozen) once it serves.

Each check runs in a fresh interpreter: the collector's state is per process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.server import APP_DIR


def python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=APP_DIR, capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_server_starts_with_the_collector_off() -> None:
    # The program refuses its settings (no pin) right after its imports: the collector is still off then.
    run = python("import atexit, gc, runpy\n"
                 "atexit.register(lambda: print('collector on' if gc.isenabled() else 'collector off'))\n"
                 "runpy.run_module('model_server', run_name='__main__')",
                 env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(APP_DIR)})
    assert run.returncode == 2 and "MODEL_SHA256 is not set" in run.stderr, run.stderr
    assert run.stdout.strip() == "collector off"
    # Imported as a module (by a test, a tool), it leaves the collector alone.
    imported = python("import gc, model_server.__main__; print(gc.isenabled())", env={"PYTHONPATH": str(APP_DIR)})
    assert imported.stdout.strip() == "True", imported.stderr


def test_settling_the_heap_freezes_what_is_loaded_and_turns_the_collector_on() -> None:
    run = python("import gc, json\n"
                 "gc.disable()\n"
                 "import sklearn.linear_model\n"
                 "from model_server.worker import settle_heap\n"
                 "loaded = len(gc.get_objects())\n"
                 "settle_heap()\n"
                 "print(json.dumps({'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count(), 'loaded': loaded,"
                 " 'tracked': len(gc.get_objects())}))", env={"PYTHONPATH": str(APP_DIR)})
    state = json.loads(run.stdout)
    assert state["enabled"] is True
    assert state["frozen"] >= state["loaded"] > 50_000  # everything loaded, scikit-learn included, is frozen
    assert state["tracked"] < 1_000  # and the collector walks only what comes after
