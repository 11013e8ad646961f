"""The whole stack, as a table of contents. Each layer is built in infra/program/ from the
validated settings and the records of the layers below it:

    settings → foundation (VPC, EKS, node groups, add-ons) → platform (ingress controller,
    autoscaler, metrics-server, GPU plugin, storage) → observability (metrics, alerts, logs)
    → workload (registry, image, front door, model service) → outputs
"""

from infra.program import foundation, observability, outputs, platform, workload
from infra.settings import settings_from_runtime

# Raises, naming every problem (the model artifact's too), before any resource exists.
settings = settings_from_runtime()

base = foundation.build(settings)
cluster_platform = platform.build(settings, base)
observed = observability.build(settings, base, cluster_platform)
served = workload.build(settings, base, cluster_platform, observed)
observed.watch(served.resources)
outputs.export(settings, base, cluster_platform, observed, served)
