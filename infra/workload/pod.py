"""The model server's pod: its container, environment, resources, probes, placement and the
restricted security context the namespace enforces. Whatever controller runs the pods (the
Deployment today) takes this spec."""

from __future__ import annotations

from typing import cast

import pulumi
import pulumi_kubernetes as k8s

from infra.compute.placement import GPU_RESOURCE, GPU_TOLERATION, POOL_LABEL, spread_over_zones_and_nodes
from infra.identity import StackIdentity
from infra.settings import ModelServiceSettings
from infra.settings.artifact import Device, ModelArtifact
from infra.workload.contract import APP_NAME, LIVE_PATH, PORT_NAME, READY_PATH, SERVER_PORT, SERVER_UID, pod_labels

PREDICTION_LOG_DIR = "/var/log/predictions"
# Shutdown timeline: after the pod is marked for deletion the ALB keeps sending requests until
# the controller has deregistered it; the preStop pause covers that, then SIGTERM starts the
# server's drain and the in-flight work finishes. The grace period covers all of it
# (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/pod_readiness_gate/).
PRE_STOP_SECONDS = 20
SERVER_DRAIN_SECONDS = 5
SERVER_SHUTDOWN_SECONDS = 20
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + SERVER_DRAIN_SECONDS + SERVER_SHUTDOWN_SECONDS + 10


def server_environment(model: ModelServiceSettings, artifact: ModelArtifact,
                       device: Device) -> list[k8s.core.v1.EnvVarArgsDict]:
    max_batch_size, max_batch_wait_ms = model.batching(device)
    values = {
        "MODEL_NAME": model.name,
        "MODEL_VERSION": model.version,
        "MODEL_SHA256": artifact.sha256,
        "MODEL_PORT": str(SERVER_PORT),
        "MODEL_WORKERS": str(model.workers),
        "MODEL_MAX_BATCH_SIZE": str(max_batch_size),
        "MODEL_MAX_BATCH_WAIT_MS": f"{max_batch_wait_ms:g}",
        "MODEL_PREDICTION_LOG_DIR": PREDICTION_LOG_DIR,
        "MODEL_PREDICTION_LOG_SAMPLE_RATE": f"{model.prediction_log_sample_rate:g}",
        "MODEL_DRAIN_S": str(SERVER_DRAIN_SECONDS),
        "MODEL_SHUTDOWN_TIMEOUT_S": str(SERVER_SHUTDOWN_SECONDS),
        # Said, not left to the server's auto: the format it was checked as at config time, and the
        # pool's device, on which the server refuses to start rather than fall back to CPU silently.
        "MODEL_FORMAT": artifact.format,
        "MODEL_DEVICE": device,
    }
    return [{"name": name, "value": value} for name, value in values.items()]


def pod_spec(identity: StackIdentity, model: ModelServiceSettings, image_ref: pulumi.Input[str],
             artifact: ModelArtifact, device: Device, claim_name: pulumi.Input[str],
             service_account: pulumi.Input[str]) -> k8s.core.v1.PodSpecArgsDict:
    requests: dict[str, pulumi.Input[str]] = {"cpu": model.cpu_request, "memory": model.memory_request}
    limits: dict[str, pulumi.Input[str]] = {"cpu": model.cpu_limit, "memory": model.memory_limit}
    tolerations: list[k8s.core.v1.TolerationArgsDict] = []
    if model.gpus:
        limits[GPU_RESOURCE] = str(model.gpus)
        tolerations.append(GPU_TOLERATION)
    return {
        "service_account_name": service_account,
        "automount_service_account_token": False,  # the server never talks to the Kubernetes API
        "termination_grace_period_seconds": TERMINATION_GRACE_SECONDS,
        "node_selector": {POOL_LABEL: model.pool},
        "tolerations": tolerations,
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": SERVER_UID,
            "run_as_group": SERVER_UID,
            "fs_group": SERVER_UID,
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        # Soft, so a zone short of capacity delays nothing (the autoscaler still balances pools
        # across zones).
        "topology_spread_constraints": cast(list[k8s.core.v1.TopologySpreadConstraintArgsDict],
                                            spread_over_zones_and_nodes(pod_labels(identity))),
        "containers": [{
            "name": APP_NAME,
            "image": image_ref,
            "ports": [{"name": PORT_NAME, "container_port": SERVER_PORT, "protocol": "TCP"}],
            "env": server_environment(model, artifact, device),
            "resources": {"requests": requests, "limits": limits},
            # Loading and verifying the model happens before the server listens.
            "startup_probe": {"http_get": {"path": LIVE_PATH, "port": PORT_NAME}, "period_seconds": 2,
                             "failure_threshold": 60},
            "readiness_probe": {"http_get": {"path": READY_PATH, "port": PORT_NAME}, "period_seconds": 5,
                               "timeout_seconds": 2, "failure_threshold": 2},
            "liveness_probe": {"http_get": {"path": LIVE_PATH, "port": PORT_NAME}, "period_seconds": 10,
                              "timeout_seconds": 2, "failure_threshold": 3},
            "lifecycle": {"pre_stop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
            "security_context": {
                "allow_privilege_escalation": False,
                "read_only_root_filesystem": True,
                "run_as_non_root": True,
                "run_as_user": SERVER_UID,
                "run_as_group": SERVER_UID,
                "capabilities": {"drop": ["ALL"]},
                "seccomp_profile": {"type": "RuntimeDefault"},
            },
            "volume_mounts": [
                {"name": "tmp", "mount_path": "/tmp"},
                {"name": "prediction-logs", "mount_path": PREDICTION_LOG_DIR},
            ],
        }],
        "volumes": [
            {"name": "tmp", "empty_dir": {"size_limit": "64Mi"}},
            {"name": "prediction-logs", "persistent_volume_claim": {"claim_name": claim_name}},
        ],
    }
