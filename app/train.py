"""Train the reference model deterministically and write the artifact with its sha256.

    python train.py                      # model.pkl + model.pkl.sha256 (what the image serves)
    python train.py --format skops --out model.skops

The data set (iris) ships inside scikit-learn, the solver is deterministic and the seed
is fixed, so the same library versions produce byte-identical artifacts. The rows of the model
gate's evaluation set (eval/iris.csv) are held out: the gate judges the model on rows it never saw.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
from pathlib import Path

import joblib
import numpy as np
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

PICKLE_PROTOCOL = 5
EVAL_SET = Path(__file__).resolve().parent / "eval" / "iris.csv"


def held_out_rows() -> list[int]:
    """The rows of load_iris() in the gate's evaluation set: one list, so the two never overlap."""
    with EVAL_SET.open(newline="") as file:
        return [int(record["source_row"]) for record in csv.DictReader(file)]


def train() -> Pipeline:
    features, labels = load_iris(return_X_y=True)
    trained_on = np.setdiff1d(np.arange(len(labels)), held_out_rows())
    features, labels = features[trained_on], labels[trained_on]
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=1000, random_state=0)),
    ])
    return pipeline.fit(features, labels)


def serialize(model: Pipeline, fmt: str) -> bytes:
    if fmt == "skops":
        return bytes(skops.io.dumps(model))
    buffer = io.BytesIO()
    joblib.dump(model, buffer, protocol=PICKLE_PROTOCOL)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["pickle", "skops"], default="pickle")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "model.pkl")
    options = parser.parse_args()
    data = serialize(train(), options.format)
    digest = hashlib.sha256(data).hexdigest()
    options.out.write_bytes(data)
    options.out.with_name(options.out.name + ".sha256").write_text(f"{digest}  {options.out.name}\n")
    print(f"wrote {options.out} ({len(data)} bytes), sha256 {digest}")


if __name__ == "__main__":
    main()
