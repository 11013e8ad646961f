"""The whole stack, as a table of contents. Each layer is built in infra/program/ from the
validated settings and the records of the layers below it:

    settings → foundation (VPC, EKS, node groups, add-ons) → platform (ingress controller,
    autoscaler, metrics-server, GPU plugin, storage) → observability (metrics, alerts, logs)
    → workload (registry, image, front door, model service) → outputs
"""

from infra.program import foundation, observability, outputs, platform, workload
from infra.settings import settings_from_runtime
from infra.workload.image import AppArtifact

# Both raise, naming every problem, before any resource exists.
settings = settings_from_runtime()
app = AppArtifact.inspect()

base = foundation.build(settings)
cluster_platform = platform.build(settings, base)
observed = observability.build(settings, base, cluster_platform)
served = workload.build(settings, app, base, cluster_platform, observed)
observed.watch(served.resources)
outputs.export(settings, base, cluster_platform, observed, served)
