"""A fast, safe Open Inference Protocol (KServe V2) server for one model: scikit-learn, XGBoost, LightGBM or ONNX."""

import os

# Workers are the unit of parallelism; numeric libraries stay single-threaded in the supervisor
# (a BLAS or OpenMP thread pool made before fork deadlocks the workers); each runtime sets its
# library's threads per worker after the fork (MODEL_THREADS). Set here, before any module of the
# package can import numpy.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# ONNX Runtime >= 1.29 on Linux uploads usage telemetry to Microsoft by default; this is its opt-out,
# read once when the runtime initialises (microsoft/onnxruntime#27379, #29843). A model server has no
# business calling out, and its egress may well be closed.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "1.0.0"
