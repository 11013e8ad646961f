"""The model gate: an artifact that predicts garbage, changes too much against the deployed one,
or is not the pinned file never reaches a deployment.

Most tests run the gate in-process on artifacts fitted into tmp_path; one builds the real image
and runs it there, as `make gate` and the deploy workflow do.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris

from model_server import gate
from tests.app.test_container import BASE_IMAGE, build_offline_base, docker, docker_problem
from tests.support.gate import fitted_on, shuffled_labels, swapped_species, write_pinned
from tests.support.server import APP_DIR
from train import train

ROOT = APP_DIR.parent
THRESHOLDS = "app/eval/gate.json"  # relative to ROOT, as `make gate` and CI name it
BUNDLED = APP_DIR / "model.pkl"
BUNDLED_SHA256 = (APP_DIR / "model.pkl.sha256").read_text().split()[0]
GATE_IMAGE = "model-serving-test/model-server:gate"


@dataclass
class Verdict:
    code: int
    out: str
    err: str


@pytest.fixture
def run_gate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The gate in-process, from the project's root, on MODEL_PATH/MODEL_SHA256 like the image's."""

    def run(model: Path = BUNDLED, sha256: str | None = BUNDLED_SHA256, *args: str,
            thresholds: str | Path = THRESHOLDS, **env: str) -> Verdict:
        monkeypatch.chdir(ROOT)
        for variable in [v for v in os.environ if v.startswith("MODEL_")]:
            monkeypatch.delenv(variable)
        monkeypatch.setenv("MODEL_PATH", str(model))
        if sha256 is not None:
            monkeypatch.setenv("MODEL_SHA256", sha256)
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        code = gate.main(["--thresholds", str(thresholds), *args])
        captured = capsys.readouterr()
        return Verdict(code, captured.out, captured.err)

    return run


def thresholds_file(tmp_path: Path, **changes: Any) -> Path:
    """The committed thresholds with some keys changed (None: removed), the committed eval set."""
    document = json.loads((ROOT / THRESHOLDS).read_text())
    document["eval_set"] = str(APP_DIR / "eval" / document["eval_set"])
    document.update(changes)
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({key: value for key, value in document.items() if value is not None}))
    return path


def test_the_bundled_model_passes_with_its_numbers(run_gate: Any) -> None:
    verdict = run_gate()
    assert verdict.code == 0, verdict.err
    assert "gate: accuracy 0.98 on app/eval/iris.csv (45 rows), floor 0.90" in verdict.out
    assert f"gate passed: model file {BUNDLED} (sha256 {BUNDLED_SHA256})" in verdict.out
    assert verdict.err == ""


def test_a_model_trained_on_shuffled_labels_is_refused_with_its_numbers(tmp_path: Path) -> None:
    # As a subprocess: `python -m model_server.gate` is how the image runs it.
    path, digest = write_pinned(tmp_path, fitted_on(shuffled_labels()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    env.update({"PYTHONPATH": str(APP_DIR), "MODEL_PATH": str(path), "MODEL_SHA256": digest})
    result = subprocess.run([sys.executable, "-m", "model_server.gate", "--thresholds", THRESHOLDS],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("gate failed: accuracy 0.20 on app/eval/iris.csv (45 rows) is below the floor 0.90 "
            "(app/eval/gate.json)\n") in result.stderr
    assert "gate passed" not in result.stdout


def test_the_floor_itself_passes_and_just_below_it_fails(run_gate: Any, tmp_path: Path) -> None:
    exact = 44 / 45  # the bundled model misses one of the 45 rows
    assert run_gate(thresholds=thresholds_file(tmp_path, floors={"accuracy": exact})).code == 0
    verdict = run_gate(thresholds=thresholds_file(tmp_path, floors={"accuracy": 0.98}))
    assert verdict.code == 1
    # Two decimals would print "0.98 is below the floor 0.98": more are shown.
    assert "accuracy 0.978 on" in verdict.err and "below the floor 0.980" in verdict.err


def test_predictions_changed_beyond_the_limit_are_refused(run_gate: Any, tmp_path: Path) -> None:
    previous, _ = write_pinned(tmp_path / "previous", fitted_on(swapped_species()))
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev")
    assert verdict.code == 1
    assert "gate: accuracy 0.98 on app/eval/iris.csv (45 rows), floor 0.90" in verdict.out  # its own quality is fine
    assert ("gate failed: 30 of 45 predictions (67%) on app/eval/iris.csv differ from deployed/dev's, "
            "more than max_changed_share 0.10 allows (app/eval/gate.json)") in verdict.err


def test_changes_up_to_the_limit_pass(run_gate: Any, tmp_path: Path) -> None:
    previous, _ = write_pinned(tmp_path / "previous", fitted_on(swapped_species()))
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev",
                       thresholds=thresholds_file(tmp_path, max_changed_share=30 / 45))
    assert verdict.code == 0, verdict.err
    assert "30 of 45 predictions (67%) on" in verdict.out and "within max_changed_share 0.67" in verdict.out


def test_a_previous_model_predicting_another_type_of_class_changed_every_prediction(run_gate: Any,
                                                                                     tmp_path: Path) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])[load_iris(return_X_y=True)[1]]
    previous, _ = write_pinned(tmp_path / "previous", fitted_on(names))
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev")
    assert verdict.code == 1
    assert "45 of 45 predictions (100%) on app/eval/iris.csv differ from deployed/dev's" in verdict.err


def test_the_same_artifact_deployed_again_changes_nothing(run_gate: Any, tmp_path: Path) -> None:
    previous, _ = write_pinned(tmp_path / "previous", train())
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/prod")
    assert verdict.code == 0, verdict.err
    assert "gate: 0 of 45 predictions (0%) on app/eval/iris.csv differ from deployed/prod's" in verdict.out


def test_without_a_previous_artifact_the_comparison_is_skipped_and_said(run_gate: Any) -> None:
    verdict = run_gate()
    assert verdict.code == 0
    assert "gate: no previously deployed artifact given (--previous): predictions are not compared" in verdict.out
    assert "differ from" not in verdict.out


def test_a_limit_of_one_skips_the_comparison_even_with_an_unloadable_previous(run_gate: Any, tmp_path: Path) -> None:
    # The way to ship a deliberate change of model or library: the previous one need not load here.
    previous = tmp_path / "model.pkl"
    previous.write_bytes(b"not a model")
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev",
                       thresholds=thresholds_file(tmp_path, max_changed_share=1))
    assert verdict.code == 0, verdict.err
    assert "max_changed_share is 1" in verdict.out and "not compared with deployed/dev" in verdict.out


def test_a_tampered_artifact_is_refused_as_the_server_refuses_it(run_gate: Any, tmp_path: Path) -> None:
    path, digest = write_pinned(tmp_path, train())
    path.write_bytes(path.read_bytes() + b"\x00")
    verdict = run_gate(path, digest)
    assert verdict.code == 1
    assert re.search(rf"^gate failed: model file {re.escape(str(path))} has sha256 [0-9a-f]{{64}}, "
                     rf"but MODEL_SHA256 pins {digest}: refusing to load", verdict.err, re.M), verdict.err
    assert "accuracy" not in verdict.out


def test_a_tampered_previous_artifact_is_refused(run_gate: Any, tmp_path: Path) -> None:
    previous, digest = write_pinned(tmp_path, train())
    previous.write_bytes(previous.read_bytes() + b"\x00")
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev")
    assert verdict.code == 1
    assert f"gate failed: cannot compare with deployed/dev: model file {previous} has sha256" in verdict.err
    assert f"but MODEL_SHA256 pins {digest}" in verdict.err


def test_a_previous_artifact_without_its_pin_is_refused(run_gate: Any, tmp_path: Path) -> None:
    previous, _ = write_pinned(tmp_path, train())
    previous.with_name("model.pkl.sha256").unlink()
    verdict = run_gate(BUNDLED, BUNDLED_SHA256, "--previous", str(previous), "--previous-name", "deployed/dev")
    assert verdict.code == 1
    assert (f"gate failed: cannot compare with deployed/dev: its pin {previous}.sha256 cannot be read "
            "(No such file or directory): refusing to load an unpinned artifact") in verdict.err


def test_an_unpinned_artifact_is_not_judged(run_gate: Any) -> None:
    verdict = run_gate(BUNDLED, None, MODEL_ALLOW_UNPINNED="true")  # enough for the server, not for the gate
    assert verdict.code == 2
    assert "the gate judges only a pinned artifact: set MODEL_SHA256" in verdict.err


@pytest.mark.parametrize(("changes", "problem"), [
    ({"floors": {"accuracy": 1.5}}, "floors.accuracy: 1.5 is outside accuracy's range 0 to 1"),
    ({"floors": {"f1": 0.9}}, "floors.f1: not a metric of a classifier; choose one of accuracy"),
    ({"floors": {"accuracy": "0.9"}}, "floors.accuracy: Input should be a valid number"),
    ({"floors": {}}, "floors: Dictionary should have at least 1 item"),
    ({"max_changed_share": None}, "max_changed_share: Field required"),
    ({"max_changed_share": 1.1}, "max_changed_share: Input should be less than or equal to 1"),
    ({"kind": "regressor"}, "kind: 'regressor' is not a kind the gate knows; choose one of classifier"),
    ({"label": "petal_width_cm"}, "label: 'petal_width_cm' is also one of the features"),
    ({"max_change": 0.1}, "max_change: Extra inputs are not permitted"),
])
def test_bad_thresholds_are_refused_naming_the_key(run_gate: Any, tmp_path: Path, changes: dict[str, Any],
                                                   problem: str) -> None:
    path = thresholds_file(tmp_path, **changes)
    verdict = run_gate(thresholds=path)
    assert verdict.code == 2
    assert f"gate cannot judge the artifact: invalid thresholds file {path} (1 problem):\n  {problem}" in verdict.err
    assert "gate passed" not in verdict.out


def test_every_thresholds_problem_is_listed_at_once(run_gate: Any, tmp_path: Path) -> None:
    path = thresholds_file(tmp_path, floors={"accuracy": 2, "f1": 0.5}, label="sepal_width_cm")
    verdict = run_gate(thresholds=path)
    assert verdict.code == 2
    assert "(3 problems):" in verdict.err
    assert all(key in verdict.err for key in ("floors.accuracy:", "floors.f1:", "label:"))


def test_unreadable_thresholds_are_refused(run_gate: Any, tmp_path: Path) -> None:
    broken = tmp_path / "gate.json"
    broken.write_text('{"eval_set": ')
    verdict = run_gate(thresholds=broken)
    assert verdict.code == 2
    assert f"invalid thresholds file {broken} (1 problem):\n  (the file): Invalid JSON: EOF" in verdict.err
    missing = run_gate(thresholds=tmp_path / "absent.json")
    assert missing.code == 2
    assert f"thresholds file {tmp_path / 'absent.json'} cannot be read: No such file or directory" in missing.err


def write_eval_set(tmp_path: Path, text: str) -> Path:
    (tmp_path / "eval.csv").write_text(text)
    return thresholds_file(tmp_path, eval_set=str(tmp_path / "eval.csv"))


HEADER = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,species\n"


@pytest.mark.parametrize(("text", "problem"), [
    ("sepal_length_cm,sepal_width_cm,species\n5.1,3.5,0\n",
     "has no column 'petal_length_cm', 'petal_width_cm'"),
    (HEADER + "5.1,3.5,1.4,0.2,0\n4.9,three,1.4,0.2,0\n", "line 3: sepal_width_cm is 'three', not a number"),
    (HEADER + "5.1,3.5,1.4\n", "line 2: petal_width_cm is None, not a number"),
    (HEADER + "5.1,3.5,1.4,0.2\n", "line 2: species is missing"),
    (HEADER, "has a header but no rows"),
])
def test_a_broken_eval_set_is_refused_naming_the_line_and_column(run_gate: Any, tmp_path: Path, text: str,
                                                                 problem: str) -> None:
    verdict = run_gate(thresholds=write_eval_set(tmp_path, text))
    assert verdict.code == 2
    assert f"gate cannot judge the artifact: evaluation set {tmp_path / 'eval.csv'} " in verdict.err
    assert problem in verdict.err


def test_labels_the_model_cannot_predict_fail_the_artifact(run_gate: Any, tmp_path: Path) -> None:
    verdict = run_gate(thresholds=write_eval_set(tmp_path, HEADER + "5.1,3.5,1.4,0.2,setosa\n"))
    assert verdict.code == 1
    assert "the model predicts numbers (int64), but the column 'species' of" in verdict.err


def test_an_artifact_taking_other_inputs_fails(run_gate: Any, tmp_path: Path) -> None:
    features, labels = load_iris(return_X_y=True)
    path, digest = write_pinned(tmp_path, train().fit(features[:, :3], labels))
    verdict = run_gate(path, digest)
    assert verdict.code == 1
    assert f"gate failed: model file {path} takes 3 features, but app/eval/iris.csv gives 4" in verdict.err


def test_the_eval_set_is_what_its_readme_says() -> None:
    # Every row of load_iris() whose index ends in 0, 1 or 2, its values copied unchanged.
    features, labels = load_iris(return_X_y=True)
    with (APP_DIR / "eval" / "iris.csv").open(newline="") as file:
        records = list(csv.DictReader(file))
    assert [int(r["source_row"]) for r in records] == [i for i in range(150) if i % 10 < 3]
    thresholds = json.loads((ROOT / THRESHOLDS).read_text())
    for record in records:
        row = int(record["source_row"])
        assert [float(record[column]) for column in thresholds["features"]] == features[row].tolist()
        assert int(record[thresholds["label"]]) == labels[row]
    assert np.bincount([int(r["species"]) for r in records]).tolist() == [15, 15, 15]


def test_the_server_never_imports_the_gate() -> None:
    # Every other module of the package imported, as the server and its workers import them.
    code = ("import pkgutil, importlib, sys, model_server\n"
            "for module in pkgutil.iter_modules(model_server.__path__):\n"
            "    if module.name != 'gate':\n"
            "        importlib.import_module('model_server.' + module.name)\n"
            "assert 'model_server.gate' not in sys.modules, 'a server module imports model_server.gate'\n")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(APP_DIR)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_deploy_job_runs_the_gate_before_anything_is_pushed() -> None:
    steps = yaml.safe_load((ROOT / ".github/workflows/deploy-stack.yml").read_text())["jobs"]["up"]["steps"]
    (gate_step,) = [index for index, step in enumerate(steps) if "app/eval/gate.sh" in str(step.get("run", ""))]
    (up_step,) = [index for index, step in enumerate(steps) if step.get("id") == "up"]
    assert gate_step < up_step
    run = steps[gate_step]["run"]
    assert "docker build" in run and '"deployed/$STACK"' in run


@pytest.fixture
def gate_image() -> str:
    problem = docker_problem()
    if problem is not None:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(f"the gate's image test needs Docker: {problem}")
    build_offline_base("bookworm", BASE_IMAGE)
    result = docker("build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", GATE_IMAGE, str(APP_DIR),
                    timeout=1200, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return GATE_IMAGE


def test_the_gate_runs_inside_the_built_image(gate_image: str, tmp_path: Path) -> None:
    script = str(APP_DIR / "eval" / "gate.sh")
    # Compared with the committed artifact (HEAD stands in for deployed/<stack>): the script's
    # git lookup, mounts and pins, end to end.
    passed = subprocess.run([script, gate_image, "HEAD"], capture_output=True, text=True, timeout=300)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "gate: accuracy 0.98 on app/eval/iris.csv (45 rows), floor 0.90" in passed.stdout
    assert "predictions (0%) on app/eval/iris.csv differ from HEAD's" in passed.stdout
    assert "gate passed: model file /app/model.pkl" in passed.stdout

    first = subprocess.run([script, gate_image, "deployed/no-such-stack"], capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "gate: deployed/no-such-stack does not exist (a first deploy)" in first.stdout

    # A failing verdict from inside the image: the image's artifact against a very different one.
    previous, _ = write_pinned(tmp_path / "previous", fitted_on(swapped_species()))
    (tmp_path / "previous").chmod(0o755)  # the image's user (UID 10001) reads the mount
    failed = docker("run", "--rm", "--read-only", "--network", "none",
                    "--volume", f"{APP_DIR / 'eval'}:/app/eval:ro", "--volume", f"{previous.parent}:/previous:ro",
                    "--env", f"MODEL_SHA256={BUNDLED_SHA256}", "--workdir", "/", "--entrypoint", "python",
                    gate_image, "-m", "model_server.gate", "--thresholds", THRESHOLDS,
                    "--previous", "/previous/model.pkl", "--previous-name", "deployed/dev", check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "gate failed: 30 of 45 predictions (67%) on app/eval/iris.csv differ from deployed/dev's" in failed.stderr



EXAMPLE_ACCURACY = {"xgboost": "0.96", "lightgbm": "0.93", "onnx": "0.98", "onnx-mlp": "0.96"}


@pytest.mark.parametrize("example", sorted(EXAMPLE_ACCURACY))
def test_every_runtimes_example_passes_its_gate(run_gate: Any, example: str) -> None:
    directory = APP_DIR / "examples" / example
    (artifact,) = [path for path in directory.glob("model.*") if path.suffix != ".sha256"]
    pin = artifact.with_name(artifact.name + ".sha256").read_text().split()[0]
    verdict = run_gate(artifact, pin, thresholds=directory / "gate.json")
    assert verdict.code == 0, verdict.err
    assert (f"gate: accuracy {EXAMPLE_ACCURACY[example]} on {directory / '../../eval/iris.csv'} (45 rows), "
            "floor 0.90") in verdict.out


def test_an_example_deployed_again_changes_nothing(run_gate: Any) -> None:
    """The comparison with the deployed artifact goes through the same runtime as the judgement."""
    directory = APP_DIR / "examples" / "xgboost"
    pin = (directory / "model.ubj.sha256").read_text().split()[0]
    verdict = run_gate(directory / "model.ubj", pin, "--previous", str(directory / "model.ubj"),
                       "--previous-name", "deployed/dev", thresholds=directory / "gate.json")
    assert verdict.code == 0, verdict.err
    assert "gate: 0 of 45 predictions (0%)" in verdict.out


def test_an_output_the_model_lacks_is_named(run_gate: Any, tmp_path: Path) -> None:
    verdict = run_gate(thresholds=thresholds_file(tmp_path, output="label"))
    assert verdict.code == 1
    assert (f"gate failed: model file {BUNDLED} has no output 'label'; its outputs are predict, predict_proba "
            "('output' in the thresholds file)") in verdict.err
