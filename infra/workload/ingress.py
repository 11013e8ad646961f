"""The Ingress's annotations: what the AWS Load Balancer Controller builds for the model endpoint
(scheme, sources, TLS, WAF, access logs, health checks), and the address it reports back."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.settings import CanarySettings, ModelServiceSettings
from infra.workload.contract import ACCESS_LOG_PREFIX, NAMESPACE, PORT_NAME, READY_PATH

# The ALB controller reads the rule's action from the Ingress's annotation for a backend on this port.
USE_ANNOTATION = "use-annotation"
# Migration, step 1: a rule no client uses, which sends the root Service to Argo's action so the
# Rollout is valid (Argo refuses a Rollout whose Ingress has no such rule) while "/" still goes to
# the Deployment's pods through the Service's own port.
ADOPTION_PATH = "/.well-known/model-serving/rollout"

# How long the ALB lets requests in flight to a deregistered pod finish (the pod's shutdown, pod.py, outlasts it).
DEREGISTRATION_DELAY_SECONDS = 30
# TLS 1.3 and 1.2 with post-quantum key exchange, what AWS recommends since 2025-09
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html).
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"


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


def ingress_paths(canary: CanarySettings, root_service: pulumi.Input[str],
                  ) -> list[k8s.networking.v1.HTTPIngressPathArgsDict]:
    """Where the load balancer sends requests: with canaries, to the action Argo Rollouts writes into
    the annotations (weighted between the ping and pong Services, rollout.py); without, to the Service."""
    def to(port: str) -> k8s.networking.v1.IngressBackendArgsDict:
        return {"service": {"name": root_service, "port": {"name": port}}}

    if not canary.enabled:
        return [{"path": "/", "path_type": "Prefix", "backend": to(PORT_NAME)}]
    if canary.adopt_deployment:
        return [{"path": ADOPTION_PATH, "path_type": "Exact", "backend": to(USE_ANNOTATION)},
                {"path": "/", "path_type": "Prefix", "backend": to(PORT_NAME)}]
    return [{"path": "/", "path_type": "Prefix", "backend": to(USE_ANNOTATION)}]


def load_balancer_hostname(status: k8s.networking.v1.outputs.IngressStatus | None) -> str:
    """The ALB's DNS name, which the controller writes into the Ingress status (Pulumi waits for it)."""
    balancers = status.load_balancer.ingress if status and status.load_balancer else None
    if not balancers or not balancers[0].hostname:
        raise ValueError(f"the Ingress has no load balancer address: see `kubectl -n {NAMESPACE} describe ingress` "
                         "and the aws-load-balancer-controller logs in kube-system")
    return balancers[0].hostname
