"""Canary delivery: the Argo Rollout that runs the model's pods, and the two Services it routes
between.

The ALB splits traffic itself (`trafficRouting.alb`): the Ingress's rule sends the root Service
(`model-server`, port `use-annotation`) to the action Argo writes into the Ingress's
`alb.ingress.kubernetes.io/actions.model-server` annotation, weighted between two Services
(https://github.com/kubernetes-sigs/aws-load-balancer-controller/blob/v3.5.0/docs/guide/ingress/annotations.md#actions).

Ping-pong, not stable and canary Services: the canary's Service takes all traffic at promotion and
the two swap roles, so no Service's selector changes under pods already registered with the load
balancer. Changing the stable Service's selector at promotion is what gives the 503s users report
at the final step (argo-rollouts#4433): the new pods' readiness gates were injected for the canary's
target group, not the stable one's.

The stable ReplicaSet stays fully scaled during a canary (`dynamicStableScale` off), so an abort puts
all traffic back on it at once; the canary's pods go 30 s later, once the load balancer has drained
them. Pulumi declares neither `spec.replicas` (KEDA's) nor anything Argo writes: the Ingress's actions
annotations and the pod-template-hash selector Argo adds to both Services (the Services' selectors are
atomic maps under server-side apply, so Pulumi never sends them again after creating the Services).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from infra.settings import CanarySettings
from infra.workload.analysis import HEALTH_TEMPLATE, TRAFFIC_TEMPLATE, hash_args
from infra.workload.contract import APP_NAME, PORT_NAME

ROLLOUT_API = "argoproj.io/v1alpha1"
ROOT_SERVICE = APP_NAME
PING_SERVICE, PONG_SERVICE = f"{APP_NAME}-ping", f"{APP_NAME}-pong"
SERVICE_PORT = 80
# Revisions kept, and how many back a rollback returns without the canary steps and analysis.
REVISION_HISTORY = 5
ROLLBACK_WINDOW = 3
# Seconds the old pods stay after an abort or a promotion: longer than the target group's
# deregistration delay would cut requests in flight, so they match it (ingress.py).
SCALE_DOWN_DELAY_SECONDS = 30
# A revision whose pods are not ready in this time aborts instead of hanging (image pull failure,
# a model that does not load): the release wait then fails with the reason.
PROGRESS_DEADLINE_SECONDS = 600
# After `make rollback` has put an earlier template back (as `kubectl argo rollouts undo`), another
# field manager owns the template's fields: the next `pulumi up` that changes them (the fix) must
# take them back rather than fail on a server-side-apply conflict. Pulumi declares no field Argo
# writes, so forcing takes nothing from Argo
# (https://www.pulumi.com/registry/packages/kubernetes/installation-configuration/#server-side-apply).
ROLLOUT_ANNOTATIONS: dict[str, pulumi.Input[str]] = {"pulumi.com/patchForce": "true"}
# Migration, step 1 (README): the Rollout takes its pods' template from the Deployment it replaces.
ADOPTED_DEPLOYMENT = APP_NAME


def steps(canary: CanarySettings) -> list[dict[str, Any]]:
    """setWeight and pause per configured step, then the traffic check before promotion."""
    result: list[dict[str, Any]] = []
    for step in canary.steps:
        result.append({"setWeight": step.weight})
        if step.pause_seconds:
            result.append({"pause": {"duration": f"{step.pause_seconds}s"}})
    result.append({"analysis": {"templates": [{"templateName": TRAFFIC_TEMPLATE}], "args": hash_args("canary-hash")}})
    return result


def strategy(canary: CanarySettings, ingress_name: str, canary_pod_annotations: Mapping[str, str]) -> dict[str, Any]:
    ephemeral: dict[str, Any] = {}
    if canary_pod_annotations:
        # On the canary's pods only while it is judged: Argo takes ephemeral metadata off at promotion
        # (https://argo-rollouts.readthedocs.io/en/stable/features/ephemeral-metadata/).
        ephemeral["canaryMetadata"] = {"annotations": dict(canary_pod_annotations)}
    return {"canary": {
        **ephemeral,
        "pingPong": {"pingService": PING_SERVICE, "pongService": PONG_SERVICE},
        "trafficRouting": {"alb": {"ingress": ingress_name, "rootService": ROOT_SERVICE,
                                   "servicePort": SERVICE_PORT}},
        "dynamicStableScale": False,
        "abortScaleDownDelaySeconds": SCALE_DOWN_DELAY_SECONDS,
        "scaleDownDelaySeconds": SCALE_DOWN_DELAY_SECONDS,
        # Judged from the first step on; an analysis that fails or errors aborts the release.
        "analysis": {"templates": [{"templateName": HEALTH_TEMPLATE}],
                     "args": hash_args("canary-hash", "stable-hash")},
        "steps": steps(canary),
    }}


def rollout_spec(canary: CanarySettings, pod_labels: dict[str, str], pod: k8s.core.v1.PodSpecArgsDict,
                 ingress_name: str, canary_pod_annotations: Mapping[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "revisionHistoryLimit": REVISION_HISTORY,
        "rollbackWindow": {"revisions": ROLLBACK_WINDOW},
        "selector": {"matchLabels": pod_labels},
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "progressDeadlineAbort": True,
        "strategy": strategy(canary, ingress_name, canary_pod_annotations),
    }
    if canary.adopt_deployment:
        # The Deployment keeps serving (its HPA keeps its count) while the Rollout's pods start from its
        # template (https://argo-rollouts.readthedocs.io/en/stable/migrating/#reference-deployment-from-rollout).
        spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": ADOPTED_DEPLOYMENT,
                               "scaleDown": "never"}
    else:
        # Typed pod arguments, so Pulumi writes the pod spec's keys as Kubernetes spells them (a custom
        # resource's spec is otherwise sent as written). The dict's types are the *ArgsDict twins of
        # the classes PodSpecArgs declares, which mypy does not equate.
        spec["template"] = {"metadata": {"labels": pod_labels},
                            "spec": k8s.core.v1.PodSpecArgs(**cast(dict[str, Any], pod))}
    return spec


def action_services(metadata: Any, pod_labels: dict[str, str], opts: pulumi.ResourceOptions,
                    name: str) -> list[k8s.core.v1.Service]:
    """The ping and pong Services. Argo adds the revision's hash to each one's selector; Pulumi sets
    the selector once, at creation, and never again."""
    return [
        k8s.core.v1.Service(
            f"{name}-{role}", metadata=metadata(service),
            spec={"selector": pod_labels, "ports": [{"name": PORT_NAME, "port": SERVICE_PORT,
                                                     "target_port": PORT_NAME}]},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.selector"])))
        for role, service in (("ping", PING_SERVICE), ("pong", PONG_SERVICE))
    ]
