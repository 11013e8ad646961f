"""python -m model_server.gate: refuse a model artifact before it ships.

    python -m model_server.gate --thresholds app/eval/gate.json \\
        [--previous /previous/model.pkl --previous-name deployed/dev]

It runs inside the built image, so the artifact is judged with the image's exact libraries and
the server's own loader: it is read from MODEL_PATH and must match MODEL_SHA256, as when the
server starts. The gate predicts the evaluation set named by the thresholds file in one batch,
reads the output the thresholds name (`predict` unless `output` says another), and fails when

- a metric of the model's kind is below its floor (accuracy for a classifier), or
- more than `max_changed_share` of the predictions differ from those of the previously deployed
  artifact (--previous, pinned by the file beside it, `<artifact>.sha256`). Without --previous
  (a stack's first deploy) that comparison is skipped, and the gate says so.

Exit codes: 0 the artifact passed; 1 it failed (refused by the loader, below a floor, or too many
predictions changed), each reason printed with its numbers; 2 the gate cannot judge it (invalid
thresholds file, evaluation set, settings or arguments).

The server never imports this module: serving needs nothing of it.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_server.errors import ModelLoadError
from model_server.model import load_model
from model_server.settings import ServerSettings, settings_problems

PASSED, FAILED, CANNOT_JUDGE = 0, 1, 2


class CannotJudge(Exception):
    """The thresholds, the evaluation set or the settings are invalid: no verdict (exit 2)."""


class Refused(Exception):
    """The artifact cannot be evaluated at all (exit 1): it does not load, or cannot predict."""


@dataclass(frozen=True)
class Metric:
    """A quality measure of predictions against the expected outputs; higher is better."""

    compute: Callable[[np.ndarray, np.ndarray], float]
    lowest: float
    highest: float


@dataclass(frozen=True)
class ModelKind:
    """What the gate needs to know about what a kind of model predicts."""

    metrics: dict[str, Metric]
    # Elementwise: which predictions count as changed against the deployed artifact's.
    differs: Callable[[np.ndarray, np.ndarray], np.ndarray]


def accuracy(expected: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(expected == predicted))


def classes_differ(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    # As text: a previous model predicting another type of class (0 where it said "setosa")
    # counts as changed, where numpy would refuse to compare the two arrays at all.
    differ: np.ndarray = current.astype(str) != previous.astype(str)
    return differ


# Another kind (a regressor, with its own metrics and a tolerance in `differs`) is one more
# entry here: the gate itself only loads, predicts a batch and reads one output.
KINDS: dict[str, ModelKind] = {
    "classifier": ModelKind(metrics={"accuracy": Metric(accuracy, 0.0, 1.0)}, differs=classes_differ),
}


class Thresholds(BaseModel):
    """The thresholds file (app/eval/gate.json): what the artifact is evaluated on, and its limits."""

    # strict: a floor written as "0.9" (a string) is a mistake to report, not to guess at.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    eval_set: str = Field(min_length=1, description="The evaluation set, a CSV file with a header, "
                                                    "relative to the thresholds file.")
    kind: str = Field(description="What the model predicts; decides the metrics a floor can be set on.")
    features: list[str] = Field(min_length=1, description="The input columns, in the order the model takes them.")
    label: str = Field(min_length=1, description="The column holding the expected output.")
    input: str | None = Field(None, min_length=1, description="The model input the features go to; default: "
                                                              "the model's only input.")
    output: str = Field("predict", min_length=1, description="The model output compared with the label.")
    floors: dict[str, float] = Field(min_length=1, description="The lowest acceptable value of each metric.")
    max_changed_share: float = Field(
        ge=0, le=1, description="The largest share of predictions that may differ from the deployed artifact's; "
                                "1 lets all change and skips the comparison.")

    def problems(self) -> list[tuple[str, str]]:
        """What the field types cannot say: the checks across fields, each naming its key."""
        kind = KINDS.get(self.kind)
        if kind is None:
            return [("kind", f"{self.kind!r} is not a kind the gate knows; choose one of {', '.join(KINDS)}")]
        found: list[tuple[str, str]] = []
        for name, floor in self.floors.items():
            metric = kind.metrics.get(name)
            if metric is None:
                found.append((f"floors.{name}", f"not a metric of a {self.kind}; "
                                                f"choose one of {', '.join(kind.metrics)}"))
            elif not metric.lowest <= floor <= metric.highest:
                found.append((f"floors.{name}", f"{floor} is outside {name}'s range "
                                                f"{metric.lowest:g} to {metric.highest:g}"))
        found += [("features", f"{column!r} is listed twice")
                  for column in sorted({c for c in self.features if self.features.count(c) > 1})]
        if self.label in self.features:
            found.append(("label", f"{self.label!r} is also one of the features: an expected output "
                                   "cannot be an input"))
        return found


def load_thresholds(path: Path) -> Thresholds:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CannotJudge(f"thresholds file {path} cannot be read: {error.strerror}") from None
    try:
        thresholds = Thresholds.model_validate_json(text)
    except ValidationError as error:
        problems = [(".".join(str(part) for part in e["loc"]) or "(the file)", e["msg"]) for e in error.errors()]
    else:
        problems = thresholds.problems()
    if problems:
        listed = "".join(f"\n  {key}: {message}" for key, message in problems)
        raise CannotJudge(f"invalid thresholds file {path} ({len(problems)} "
                          f"problem{'s' if len(problems) > 1 else ''}):{listed}")
    return thresholds


@dataclass(frozen=True)
class EvalSet:
    path: Path
    rows: np.ndarray  # (n, len(features)) float64, columns in the thresholds' feature order
    labels: list[str]


def read_eval_set(path: Path, thresholds: Thresholds, thresholds_path: Path) -> EvalSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CannotJudge(f"evaluation set {path} (eval_set in {thresholds_path}) cannot be read: "
                          f"{error.strerror}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [column for column in [*thresholds.features, thresholds.label] if column not in header]
    if missing:
        raise CannotJudge(f"evaluation set {path} has no column {', '.join(map(repr, missing))} "
                          f"(named in {thresholds_path}); its header is {', '.join(header) or 'empty'}")
    rows: list[list[float]] = []
    labels: list[str] = []
    for record in reader:
        row = []
        for column in thresholds.features:
            value = record[column]
            try:
                row.append(float(value))
            except (TypeError, ValueError):  # TypeError: the line is short, DictReader gives None
                raise CannotJudge(f"evaluation set {path} line {reader.line_num}: {column} is {value!r}, "
                                  "not a number") from None
        label = record[thresholds.label]
        if label is None:
            raise CannotJudge(f"evaluation set {path} line {reader.line_num}: {thresholds.label} is missing")
        rows.append(row)
        labels.append(label)
    if not rows:
        raise CannotJudge(f"evaluation set {path} has a header but no rows")
    return EvalSet(path, np.asarray(rows, dtype=np.float64), labels)


@dataclass(frozen=True)
class Artifact:
    """An artifact as the server would load it, and what the gate's messages call it."""

    settings: ServerSettings
    name: str


def predict(artifact: Artifact, eval_set: EvalSet, thresholds: Thresholds) -> np.ndarray:
    try:
        model = load_model(artifact.settings)
    except ModelLoadError as error:  # its message names the file and the reason, as the server's does
        raise Refused(str(error)) from None
    inputs = {spec.name: spec for spec in model.inputs}
    if thresholds.input is None and len(inputs) != 1:
        raise Refused(f"{artifact.name} takes {len(inputs)} inputs ({', '.join(inputs)}): name the one the features "
                      "go to with 'input' in the thresholds file")
    spec = inputs.get(thresholds.input) if thresholds.input is not None else model.inputs[0]
    if spec is None:
        raise Refused(f"{artifact.name} has no input {thresholds.input!r}; its inputs are {', '.join(inputs)}")
    if thresholds.output not in model.outputs:
        raise Refused(f"{artifact.name} has no output {thresholds.output!r}; its outputs are "
                      f"{', '.join(model.outputs)} ('output' in the thresholds file)")
    if spec.features != eval_set.rows.shape[1]:
        raise Refused(f"{artifact.name} takes {spec.features} features, but {eval_set.path} "
                      f"gives {eval_set.rows.shape[1]}")
    try:
        model.warm_up()  # what a worker does before serving (an ONNX model creates its session here)
        rows = eval_set.rows.astype(spec.dtype)
        predicted = model.predict({spec.name: rows}, frozenset({thresholds.output}))[thresholds.output]
    except Exception as error:  # whatever the estimator raises, the artifact cannot serve this data
        raise Refused(f"{artifact.name} cannot predict {eval_set.path}: {type(error).__name__}: {error}") from None
    if predicted.shape != (len(eval_set.rows),):
        raise Refused(f"{artifact.name} predicts shape {list(predicted.shape)} for the {len(eval_set.rows)} rows "
                      f"of {eval_set.path}: the gate compares one output per row")
    return predicted


def expected_outputs(eval_set: EvalSet, predicted: np.ndarray, label: str) -> np.ndarray:
    """The label column in the model's terms: numbers for numeric outputs, text for the others."""
    if predicted.dtype.kind not in "iuf":
        return np.asarray(eval_set.labels, dtype=str)
    expected = []
    for value in eval_set.labels:
        try:
            expected.append(float(value))
        except ValueError:
            raise Refused(f"the model predicts numbers ({predicted.dtype}), but the column {label!r} of "
                          f"{eval_set.path} holds {value!r}") from None
    return np.asarray(expected)


def shown(value: float, limit: float) -> tuple[str, str]:
    """Two decimals, or more where two would print a value that misses its limit as equal to it."""
    digits = 2
    while digits < 6 and value != limit and f"{value:.{digits}f}" == f"{limit:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f}", f"{limit:.{digits}f}"


def settings_from_environment() -> ServerSettings:
    try:
        settings = ServerSettings()
    except ValidationError as error:
        raise CannotJudge(f"invalid settings: {settings_problems(error)}") from None
    if settings.sha256 is None:
        # The deployed server always runs pinned; an unpinned file proves nothing about what ships.
        raise CannotJudge("the gate judges only a pinned artifact: set MODEL_SHA256 (MODEL_ALLOW_UNPINNED "
                          "is for local serving)")
    return settings


def previous_artifact(current: ServerSettings, path: Path, name: str) -> Artifact:
    """The deployed artifact, loaded like the current one but pinned by the `.sha256` file beside it."""
    pin_file = path.with_name(path.name + ".sha256")
    try:
        words = pin_file.read_text(encoding="utf-8").split()
    except OSError as error:
        raise Refused(f"its pin {pin_file} cannot be read ({error.strerror}): refusing to load an unpinned "
                      "artifact") from None
    if not words:
        raise Refused(f"its pin {pin_file} is empty: refusing to load an unpinned artifact")
    pin = words[0]
    try:
        settings = ServerSettings.model_validate({**current.model_dump(), "path": path, "sha256": pin})
    except ValidationError:
        raise Refused(f"{pin_file} holds {pin!r}, not a sha256") from None
    return Artifact(settings, name)


@dataclass(frozen=True)
class Previous:
    """Where the previously deployed artifact is, and what messages call it (deployed/<stack>)."""

    path: Path
    name: str


def judge(thresholds_path: Path, current: Artifact, previous: Previous | None) -> list[str]:
    """Every reason the current artifact fails, with its numbers (empty: it passed)."""
    thresholds = load_thresholds(thresholds_path)
    eval_set = read_eval_set(thresholds_path.parent / thresholds.eval_set, thresholds, thresholds_path)
    kind = KINDS[thresholds.kind]
    try:
        predicted = predict(current, eval_set, thresholds)
        expected = expected_outputs(eval_set, predicted, thresholds.label)
    except Refused as error:
        return [str(error)]
    failures: list[str] = []
    for name, floor in thresholds.floors.items():
        value = kind.metrics[name].compute(expected, predicted)
        value_text, floor_text = shown(value, floor)
        summary = f"{name} {value_text} on {eval_set.path} ({len(predicted)} rows)"
        if value < floor:
            failures.append(f"{summary} is below the floor {floor_text} ({thresholds_path})")
        else:
            print(f"gate: {summary}, floor {floor_text}")
    if previous is None:
        print("gate: no previously deployed artifact given (--previous): predictions are not compared")
    elif thresholds.max_changed_share >= 1:
        print(f"gate: max_changed_share is 1 ({thresholds_path}): predictions are not compared with {previous.name}")
    else:
        try:
            before = predict(previous_artifact(current.settings, previous.path, previous.name), eval_set,
                             thresholds)
        except Refused as error:
            return [*failures, f"cannot compare with {previous.name}: {error}"]
        changed = int(np.count_nonzero(kind.differs(predicted, before)))
        share = changed / len(predicted)
        summary = (f"{changed} of {len(predicted)} predictions ({share:.0%}) on {eval_set.path} "
                   f"differ from {previous.name}'s")
        if share > thresholds.max_changed_share:
            failures.append(f"{summary}, more than max_changed_share {thresholds.max_changed_share:.2f} allows "
                            f"({thresholds_path})")
        else:
            print(f"gate: {summary}, within max_changed_share {thresholds.max_changed_share:.2f}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_server.gate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", type=Path, required=True,
                        help="the thresholds file (app/eval/gate.json); its eval_set is relative to it")
    parser.add_argument("--previous", type=Path,
                        help="the previously deployed artifact, with its pin beside it (<artifact>.sha256); "
                             "omit on a first deploy")
    parser.add_argument("--previous-name", help="what messages call the previous artifact (e.g. deployed/dev)")
    options = parser.parse_args(argv)
    try:
        settings = settings_from_environment()
        previous = None if options.previous is None else Previous(
            options.previous, options.previous_name or f"model file {options.previous}")
        failures = judge(options.thresholds, Artifact(settings, f"model file {settings.path}"), previous)
    except CannotJudge as error:
        print(f"gate cannot judge the artifact: {error}", file=sys.stderr)
        return CANNOT_JUDGE
    for failure in failures:
        print(f"gate failed: {failure}", file=sys.stderr)
    if failures:
        return FAILED
    print(f"gate passed: model file {settings.path} (sha256 {settings.sha256})")
    return PASSED


if __name__ == "__main__":
    sys.exit(main())
