"""ModelService: the model server in its own namespace, reachable over an ALB.

Namespace, ServiceAccount, Deployment (its pods from pod.py), Service, Ingress (class alb,
annotations from ingress.py), HPA, PDB, NetworkPolicy and the prediction-log volume claim.
The pods meet the Pod Security Standards "restricted" profile, which the namespace enforces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.settings import ModelServiceSettings
from infra.workload.contract import APP_NAME, NAMESPACE, PORT_NAME, SERVER_PORT, pod_labels
from infra.workload.ingress import ingress_annotations, load_balancer_hostname
from infra.workload.pod import pod_spec


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


class ModelService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    load_balancer_hostname: pulumi.Output[str]

    def __init__(self, name: str, args: ModelServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:workload:ModelService", name, None, opts)
        identity, model = args.identity, args.model
        child = pulumi.ResourceOptions(parent=self)
        selector = pod_labels(identity)

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
