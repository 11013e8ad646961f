"""A fast, safe Open Inference Protocol (KServe V2) server for one scikit-learn model."""

import os

# Workers are the unit of parallelism; numeric libraries stay single-threaded (and a BLAS
# thread pool forked mid-operation can deadlock). Set here, before any module of the package
# can import numpy.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

__version__ = "1.0.0"
