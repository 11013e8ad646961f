"""The model server's contract with everything around it: what app/Dockerfile and app/model_server
promise (user, port, health and metrics paths) and where the workload lives (namespace, names,
pod labels). The platform and observability layers meet the workload here, and only here."""

from __future__ import annotations

from infra.identity import StackIdentity

# What the image runs as and serves (app/Dockerfile, app/model_server/settings.py).
SERVER_UID = 10001
SERVER_PORT = 8080
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
# The highest finite bound of the server's latency and queue-wait histograms
# (app/model_server/metrics.py): histogram_quantile never reports more, so no objective at or above
# it can ever be seen as broken.
HIGHEST_LATENCY_BUCKET_S = 5.0
# Where it runs.
NAMESPACE = "model-serving"
APP_NAME = "model-server"
PORT_NAME = "http"  # the container's port, and the Service's, by name
# Where in the access-log bucket the load balancer writes.
ACCESS_LOG_PREFIX = "alb"


def pod_labels(identity: StackIdentity) -> dict[str, str]:
    """The labels of the model server's pods, and the selector of everything that finds them."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": identity.name,
            "app.kubernetes.io/part-of": identity.project}
