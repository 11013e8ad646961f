"""Train the reference model deterministically and write the artifact with its sha256.

    python train.py                      # model.pkl + model.pkl.sha256 (what the image serves)
    python train.py --format skops --out model.skops

The data set (iris) ships inside scikit-learn, the solver is deterministic and the seed
is fixed, so the same library versions produce byte-identical artifacts.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import joblib
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

PICKLE_PROTOCOL = 5


def train() -> Pipeline:
    features, labels = load_iris(return_X_y=True)
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
