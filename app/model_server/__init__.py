"""A fast, safe Open Inference Protocol (KServe V2) server for one scikit-learn model."""

__version__ = "1.0.0"
