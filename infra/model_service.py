"""ModelService: the model server in its own namespace, reachable over an ALB.

Namespace, ServiceAccount, Deployment, Service, Ingress (class alb), HPA, PDB,
NetworkPolicy and the prediction-log volume claim. The pods meet the Pod Security
Standards "restricted" profile, which the namespace enforces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.model_image import LIVE_PATH, READY_PATH, SERVER_PORT, SERVER_UID
from infra.node_pools import GPU_RESOURCE, POOL_LABEL
from infra.settings import ModelServiceSettings

NAMESPACE = "model-serving"
APP_NAME = "model-server"
PORT_NAME = "http"  # the container's port, and the Service's, by name
ACCESS_LOG_PREFIX = "alb"  # where in the access-log bucket the load balancer writes
PREDICTION_LOG_DIR = "/var/log/predictions"
# Shutdown timeline: after the pod is marked for deletion the ALB keeps sending requests until
# the controller has deregistered it; the preStop pause covers that, then SIGTERM starts the
# server's drain and the in-flight work finishes. The grace period covers all of it
# (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/pod_readiness_gate/).
PRE_STOP_SECONDS = 20
SERVER_DRAIN_SECONDS = 5
SERVER_SHUTDOWN_SECONDS = 20
DEREGISTRATION_DELAY_SECONDS = 30
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + SERVER_DRAIN_SECONDS + SERVER_SHUTDOWN_SECONDS + 10
# TLS 1.3 and 1.2 with post-quantum key exchange, what AWS recommends since 2025-09
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"


@dataclass(frozen=True)
class ModelServiceArgs:
    identity: StackIdentity
    model: ModelServiceSettings
    retain_data_on_destroy: bool
    image_ref: pulumi.Input[str]
    model_sha256: str
    vpc_cidr: str
    shared_storage_class: str
    ingress_class: str
    # From FrontDoor: the issued certificate (None: plain HTTP) and the WAF web ACL (None: no WAF).
    certificate_arn: pulumi.Input[str] | None = None
    web_acl_arn: pulumi.Input[str] | None = None
    # From AccessLogs: the bucket the load balancer writes its access logs to (None: no access logs).
    access_log_bucket: pulumi.Input[str] | None = None
    # Children do not inherit a component's depends_on: the workload waits for these itself.
    wait_for: Sequence[pulumi.Resource] = ()


def labels(identity: StackIdentity) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": identity.name,
            "app.kubernetes.io/part-of": identity.project}


def server_environment(model: ModelServiceSettings, model_sha256: str) -> list[k8s.core.v1.EnvVarArgsDict]:
    values = {
        "MODEL_NAME": model.name,
        "MODEL_VERSION": model.version,
        "MODEL_SHA256": model_sha256,
        "MODEL_PORT": str(SERVER_PORT),
        "MODEL_WORKERS": str(model.workers),
        "MODEL_MAX_BATCH_SIZE": str(model.max_batch_size),
        "MODEL_MAX_BATCH_WAIT_MS": f"{model.max_batch_wait_ms:g}",
        "MODEL_PREDICTION_LOG_DIR": PREDICTION_LOG_DIR,
        "MODEL_PREDICTION_LOG_SAMPLE_RATE": f"{model.prediction_log_sample_rate:g}",
        "MODEL_DRAIN_S": str(SERVER_DRAIN_SECONDS),
        "MODEL_SHUTDOWN_TIMEOUT_S": str(SERVER_SHUTDOWN_SECONDS),
    }
    return [{"name": name, "value": value} for name, value in values.items()]


def pod_spec(identity: StackIdentity, model: ModelServiceSettings, image_ref: pulumi.Input[str], model_sha256: str,
             claim_name: pulumi.Input[str], service_account: pulumi.Input[str]) -> k8s.core.v1.PodSpecArgsDict:
    selector = labels(identity)
    requests: dict[str, pulumi.Input[str]] = {"cpu": model.cpu_request, "memory": model.memory_request}
    limits: dict[str, pulumi.Input[str]] = {"cpu": model.cpu_limit, "memory": model.memory_limit}
    tolerations: list[k8s.core.v1.TolerationArgsDict] = []
    if model.gpus:
        limits[GPU_RESOURCE] = str(model.gpus)
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
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
        # Across zones first, then across nodes; soft, so a zone short of capacity delays
        # nothing (the autoscaler still balances pools across zones).
        "topology_spread_constraints": [
            {"max_skew": 1, "topology_key": key, "when_unsatisfiable": "ScheduleAnyway", "label_selector": {
                "match_labels": selector}}
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ],
        "containers": [{
            "name": APP_NAME,
            "image": image_ref,
            "ports": [{"name": PORT_NAME, "container_port": SERVER_PORT, "protocol": "TCP"}],
            "env": server_environment(model, model_sha256),
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


def ingress_annotations(identity: StackIdentity, model: ModelServiceSettings,
                        certificate_arn: pulumi.Input[str] | None,
                        web_acl_arn: pulumi.Input[str] | None,
                        access_log_bucket: pulumi.Input[str] | None = None) -> dict[str, pulumi.Input[str]]:
    """What the ALB controller builds (https://kubernetes-sigs.github.io/aws-load-balancer-controller/
    latest/guide/ingress/annotations/)."""
    attributes = ["routing.http.drop_invalid_header_fields.enabled=true"]
    if identity.production:
        attributes.append("deletion_protection.enabled=true")
    annotations: dict[str, pulumi.Input[str]] = {
        "alb.ingress.kubernetes.io/scheme": model.scheme,
        # The load balancer's security group admits only these sources.
        "alb.ingress.kubernetes.io/inbound-cidrs": ",".join(model.allowed_cidrs),
        # Straight to pod IPs: no extra hop through node ports, and readiness gates work.
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/healthcheck-path": READY_PATH,
        "alb.ingress.kubernetes.io/healthcheck-interval-seconds": "10",
        "alb.ingress.kubernetes.io/target-group-attributes":
            f"deregistration_delay.timeout_seconds={DEREGISTRATION_DELAY_SECONDS}",
        "alb.ingress.kubernetes.io/load-balancer-attributes": ",".join(attributes) if access_log_bucket is None
        else pulumi.Output.concat(",".join(attributes), ",access_logs.s3.enabled=true,access_logs.s3.bucket=",
                                  access_log_bucket, f",access_logs.s3.prefix={ACCESS_LOG_PREFIX}"),
        "alb.ingress.kubernetes.io/tags": ",".join(f"{k}={v}" for k, v in identity.tags.items()),
    }
    if certificate_arn is not None:
        annotations.update({
            "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
            "alb.ingress.kubernetes.io/certificate-arn": certificate_arn,
            "alb.ingress.kubernetes.io/ssl-redirect": "443",
            "alb.ingress.kubernetes.io/ssl-policy": TLS_POLICY,
        })
    else:
        annotations["alb.ingress.kubernetes.io/listen-ports"] = json.dumps([{"HTTP": 80}])
    if web_acl_arn is not None:
        annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] = web_acl_arn
    return annotations


def load_balancer_hostname(status: k8s.networking.v1.outputs.IngressStatus | None) -> str:
    """The ALB's DNS name, which the controller writes into the Ingress status (Pulumi waits for it)."""
    balancers = status.load_balancer.ingress if status and status.load_balancer else None
    if not balancers or not balancers[0].hostname:
        raise ValueError("the Ingress has no load balancer address: see `kubectl -n model-serving describe ingress` "
                         "and the aws-load-balancer-controller logs in kube-system")
    return balancers[0].hostname


class ModelService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    load_balancer_hostname: pulumi.Output[str]

    def __init__(self, name: str, args: ModelServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:workload:ModelService", name, None, opts)
        identity, model = args.identity, args.model
        child = pulumi.ResourceOptions(parent=self)
        selector = labels(identity)

        def metadata(object_name: str, annotations: dict[str, pulumi.Input[str]] | None = None,
                     ) -> k8s.meta.v1.ObjectMetaArgsDict:
            meta: k8s.meta.v1.ObjectMetaArgsDict = {"name": object_name, "namespace": NAMESPACE, "labels": selector}
            if annotations:
                meta["annotations"] = annotations
            return meta

        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": NAMESPACE, "labels": {
            # Reject any pod in this namespace that is not "restricted".
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            # The ALB controller adds a readiness gate: a rollout waits until the ALB sees new pods healthy.
            "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
        }}, opts=child)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        # Pods, the Service and the Ingress pass the ALB controller's webhooks: wait until they answer.
        after_platform = pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.wait_for])

        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-account", metadata=metadata(APP_NAME), automount_service_account_token=False,
            opts=in_namespace)
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-prediction-logs",
            metadata=metadata("prediction-logs"),
            spec={"access_modes": ["ReadWriteMany"], "storage_class_name": args.shared_storage_class,
                  # EFS grows as needed; Kubernetes requires a size anyway.
                  "resources": {"requests": {"storage": "10Gi"}}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace],
                                        retain_on_delete=args.retain_data_on_destroy),
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(APP_NAME),
            spec={
                "replicas": model.replicas,
                "selector": {"match_labels": selector},
                # Never fewer ready pods than asked for: new pods must be ready before old ones go.
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": pod_spec(identity, model, args.image_ref, args.model_sha256, claim.metadata.name,
                                     service_account.metadata.name),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[namespace, *args.wait_for],
                # The HorizontalPodAutoscaler owns the replica count after creation.
                ignore_changes=["spec.replicas"]),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(APP_NAME),
            spec={"selector": selector, "ports": [{"name": PORT_NAME, "port": 80, "target_port": PORT_NAME}]},
            opts=after_platform,
        )
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=metadata(APP_NAME, annotations=ingress_annotations(identity, model, args.certificate_arn,
                                                                        args.web_acl_arn, args.access_log_bucket)),
            spec={
                "ingress_class_name": args.ingress_class,
                "rules": [{"http": {"paths": [{"path": "/", "path_type": "Prefix", "backend": {
                    "service": {"name": service.metadata.name, "port": {"name": PORT_NAME}}}}]}}],
            },
            opts=after_platform,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-autoscaler",
            metadata=metadata(APP_NAME),
            spec={
                "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": deployment.metadata.name},
                "min_replicas": model.min_replicas,
                "max_replicas": model.max_replicas,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "average_utilization": model.target_cpu_utilization}}}],
                # Scale in slowly: a brief lull should not cost capacity the next burst needs.
                "behavior": {"scale_down": {"stabilization_window_seconds": 300}},
            },
            opts=in_namespace,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=metadata(APP_NAME),
            spec={"max_unavailable": 1, "selector": {"match_labels": selector}},
            opts=in_namespace,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(APP_NAME),
            spec={
                "pod_selector": {"match_labels": selector},
                "policy_types": ["Ingress"],
                # The ALB (target type ip) and in-cluster callers are all inside the VPC.
                "ingress": [{"from_": [{"ip_block": {"cidr": args.vpc_cidr}}],
                             "ports": [{"protocol": "TCP", "port": SERVER_PORT}]}],
            },
            opts=in_namespace,
        )
        self.load_balancer_hostname = ingress.status.apply(load_balancer_hostname)
        scheme = "https" if args.certificate_arn is not None else "http"
        self.url = pulumi.Output.concat(f"{scheme}://", model.domain) if model.domain else \
            self.load_balancer_hostname.apply(lambda hostname: f"{scheme}://{hostname}")
        self.register_outputs({"url": self.url})
