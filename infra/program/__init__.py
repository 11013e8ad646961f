"""The stack, layer by layer: each module builds one layer from the settings and the records of the
layers below it, and returns a small frozen record the next layer reads. `__main__.py` calls them in
order. Nothing here declares a resource of its own; the components do.

    foundation.py     VPC, EKS cluster, node groups, EKS add-ons            → Foundation
    platform.py       ALB controller, cluster autoscaler, metrics-server,
                      GPU device plugin, storage                             → Platform
    observability.py  alerts, metrics, logs, access logs (optional)         → Observability
    workload.py       registry, image, front door, model service, DNS       → Workload
    outputs.py        the stack's outputs
"""
