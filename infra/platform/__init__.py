"""Cluster add-ons installed into Kubernetes: one component per file."""
