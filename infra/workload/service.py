"""ModelService: the model server in its own namespace, reachable over an ALB, scaled on traffic.

Namespace, ServiceAccount, the pods' controller, Services, Ingress (class alb, annotations from
ingress.py), KEDA's ScaledObject (scaling.py), PDB, NetworkPolicy and the prediction-log volume
claim. The pods (pod.py) meet the Pod Security Standards "restricted" profile, which the namespace
enforces. How a new revision reaches users is `modelService.canary`:

- enabled (the default): an Argo Rollout releases it as a canary judged by the AnalysisTemplates
  (rollout.py, analysis.py), and `pulumi up` waits for the outcome (release.py);
- disabled: a Deployment's rolling update, no pod unavailable;
- `adoptDeployment`: step 1 of moving a deployed stack from the Deployment to the Rollout (README).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.settings import ModelServiceSettings, ObservabilitySettings
from infra.settings.artifact import Device, ModelArtifact
from infra.workload import analysis, rollout, scaling
from infra.workload.contract import APP_NAME, NAMESPACE, PORT_NAME, SERVER_PORT, pod_labels
from infra.workload.ingress import ingress_annotations, ingress_paths, load_balancer_hostname
from infra.workload.pod import pod_spec
from infra.workload.release import release_wait


@dataclass(frozen=True)
class ModelServiceArgs:
    identity: StackIdentity
    model: ModelServiceSettings
    observability: ObservabilitySettings
    retain_data_on_destroy: bool
    image_ref: pulumi.Input[str]
    artifact: ModelArtifact
    device: Device
    vpc_cidr: str
    shared_storage_class: str
    ingress_class: str
    # The cluster's kubeconfig, for the release wait (a secret).
    kubeconfig: pulumi.Input[str]
    # From FrontDoor: the issued certificate (None: plain HTTP) and the WAF web ACL (None: no WAF).
    certificate_arn: pulumi.Input[str] | None = None
    web_acl_arn: pulumi.Input[str] | None = None
    # From AccessLogs: the bucket the load balancer writes its access logs to (None: no access logs).
    access_log_bucket: pulumi.Input[str] | None = None
    # Carried by a canary's pods while it is judged (Karpenter's do-not-disrupt: consolidation never moves them).
    canary_pod_annotations: Mapping[str, str] = field(default_factory=dict)
    # Children do not inherit a component's depends_on: the workload waits for these itself (the ALB
    # controller's webhooks, the release controller's CRDs, KEDA's webhooks, storage).
    wait_for: Sequence[pulumi.Resource] = ()


def deployment_autoscaler(model: ModelServiceSettings) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgsDict:
    """The CPU autoscaler a Deployment had before KEDA: kept only while a stack migrates."""
    return {
        "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": APP_NAME},
        "min_replicas": model.min_replicas,
        "max_replicas": model.max_replicas,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "average_utilization": model.target_cpu_utilization}}}],
        # Scale in slowly: a brief lull should not cost capacity the next burst needs.
        "behavior": {"scale_down": {"stabilization_window_seconds": 300}},
    }


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
        pod = pod_spec(identity, model, args.image_ref, args.artifact, args.device, claim.metadata.name,
                       service_account.metadata.name)
        template: k8s.core.v1.PodTemplateSpecArgsDict = {"metadata": {"labels": selector}, "spec": pod}
        canary = model.canary
        def declare_deployment() -> k8s.apps.v1.Deployment:
            return k8s.apps.v1.Deployment(
                f"{name}-deployment",
                metadata=metadata(APP_NAME),
                spec={
                    "replicas": model.replicas,
                    "selector": {"match_labels": selector},
                    # Never fewer ready pods than asked for: new pods must be ready before old ones go.
                    "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                    "template": template,
                },
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[namespace, *args.wait_for],
                    # The autoscaler owns the replica count after creation.
                    ignore_changes=["spec.replicas"]),
            )

        root_service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(APP_NAME),
            spec={"selector": selector, "ports": [{"name": PORT_NAME, "port": rollout.SERVICE_PORT,
                                                   "target_port": PORT_NAME}]},
            opts=after_platform,
        )
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=metadata(APP_NAME, annotations=ingress_annotations(identity, model, args.certificate_arn,
                                                                        args.web_acl_arn, args.access_log_bucket)),
            spec={"ingress_class_name": args.ingress_class,
                  "rules": [{"http": {"paths": ingress_paths(canary, root_service.metadata.name)}}]},
            opts=after_platform,
        )
        workload_kind = model.workload_kind
        # The controller of the pods KEDA scales: the Rollout with canaries, else the Deployment.
        scaled_workload: pulumi.Resource
        if not canary.enabled:
            scaled_workload = declare_deployment()
        else:
            action_services = rollout.action_services(metadata, selector, after_platform, name)
            templates = [
                k8s.apiextensions.CustomResource(
                    f"{name}-analysis-{template_name.removeprefix(f'{APP_NAME}-')}", api_version=analysis.ANALYSIS_API,
                    kind="AnalysisTemplate", metadata=metadata(template_name), spec=spec, opts=after_platform)
                for template_name, spec in analysis.templates(canary, args.observability).items()]
            scaled_workload = k8s.apiextensions.CustomResource(
                f"{name}-rollout", api_version=rollout.ROLLOUT_API, kind="Rollout",
                metadata=metadata(APP_NAME, annotations=rollout.ROLLOUT_ANNOTATIONS),
                spec=rollout.rollout_spec(canary, selector, pod, ingress_name=APP_NAME,
                                          canary_pod_annotations=args.canary_pod_annotations),
                # Not after the Ingress: Pulumi waits for the Ingress's load balancer, which waits for the
                # action Argo writes once the Rollout exists (the two would wait for each other).
                opts=pulumi.ResourceOptions(parent=self, depends_on=[
                    namespace, *args.wait_for, *action_services, *templates, root_service]))
            if canary.adopt_deployment:
                # Migration, step 1: the Deployment keeps serving, with its own CPU autoscaler, while the
                # Rollout starts beside it.
                declare_deployment()
                k8s.autoscaling.v2.HorizontalPodAutoscaler(
                    f"{name}-autoscaler", metadata=metadata(APP_NAME), spec=deployment_autoscaler(model),
                    opts=in_namespace)
        annotations: dict[str, pulumi.Input[str]] = {} if canary.enabled else {
            # A stack deployed with a plain HPA hands it over to KEDA instead of KEDA's webhook refusing
            # a second autoscaler on the Deployment (https://keda.sh/docs/2.20/concepts/scaling-deployments/).
            scaling.TRANSFER_HPA_ANNOTATION: "true"}
        scaled = k8s.apiextensions.CustomResource(
            f"{name}-scaler", api_version=scaling.KEDA_API, kind="ScaledObject",
            metadata=metadata(APP_NAME, annotations=annotations),
            spec=scaling.scaled_object_spec(model, args.observability, workload_kind),
            # KEDA's webhook refuses a ScaledObject whose target does not exist yet.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.wait_for, scaled_workload]))
        if canary.enabled:
            release_wait(f"{name}-release", template=template, timeout_minutes=canary.release_timeout_minutes,
                         kubeconfig=args.kubeconfig, parent=self, wait_for=[scaled_workload, ingress, scaled])
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=metadata(APP_NAME),
            # A pod still loading its model is not ready, so it counts as unavailable: while one loads, no
            # serving pod may be evicted; and it is evicted itself only while the others all serve
            # (IfHealthyBudget, pinned: https://kubernetes.io/docs/tasks/run-application/configure-pdb/#unhealthy-pod-eviction-policy).
            spec={"max_unavailable": 1, "selector": {"match_labels": selector},
                  "unhealthy_pod_eviction_policy": "IfHealthyBudget"},
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
