"""Every Kubernetes object the program declares, checked against the schema of the stack's
Kubernetes version (kubernetes-validate, strict: unknown fields fail)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from review.records import ResourceRecord, Synthesis
from review.stack_files import SECRET
from tests.support.stacks import synthesized, synthesized_variant

# The committed stacks release the model as a canary: an Argo Rollout runs its pods and KEDA its
# autoscaler (custom resources, below), so no Deployment or HorizontalPodAutoscaler of the program's own.
KINDS = {"DaemonSet", "Service", "Ingress", "PodDisruptionBudget", "NetworkPolicy", "Secret", "ConfigMap",
         "StorageClass", "PersistentVolumeClaim", "ServiceAccount", "Namespace"}


CUSTOM_TYPES = ("kubernetes:monitoring.coreos.com/", "kubernetes:argoproj.io/", "kubernetes:keda.sh/",
                "kubernetes:karpenter.sh/", "kubernetes:karpenter.k8s.aws/")


def without_redacted(value: Any) -> Any:
    """The object without values synthesis redacted as secrets (a Secret's stringData): unknown
    offline, they cannot be checked here; their presence is checked where they are made."""
    if isinstance(value, dict):
        return {key: without_redacted(item) for key, item in value.items() if item != SECRET}
    if isinstance(value, list):
        return [without_redacted(item) for item in value]
    return value


def manifests(synthesis: Synthesis) -> list[ResourceRecord]:
    """Built-in Kubernetes objects the program declares (custom resources are checked below)."""
    return [r for r in synthesis.resources
            if r.type.startswith("kubernetes:") and "helm.sh" not in r.type and r.type.count(":") == 2
            and not r.type.startswith(("pulumi:", *CUSTOM_TYPES))]


def custom_resources(synthesis: Synthesis) -> list[ResourceRecord]:
    return [r for r in synthesis.resources if r.type.startswith(CUSTOM_TYPES)]


def test_the_programs_custom_resources_are_valid_against_the_crds_the_charts_ship(stack_synthesis: Synthesis) -> None:
    from tests.support.charts import rendered_charts
    from tests.support.manifests import crd_schemas, validate

    # Argo Rollouts', KEDA's and karpenter-crd's charts ship their CRDs as templates, not in crds/.
    charts = rendered_charts(stack_synthesis.stack)
    custom = crd_schemas([*(crd for chart in charts for crd in chart.crds),
                          *(obj for chart in charts for obj in chart.of_kind("CustomResourceDefinition"))])
    declared = custom_resources(stack_synthesis)
    assert {r.inputs["kind"] for r in declared} == {"PodMonitor", "ServiceMonitor", "PrometheusRule", "Rollout",
                                                    "AnalysisTemplate", "ScaledObject", "EC2NodeClass",
                                                    "NodePool"}
    for record in declared:
        assert (record.inputs["apiVersion"], record.inputs["kind"]) in custom
        validate(record.inputs, "1.35", custom)


def test_the_program_declares_every_expected_kind(stack_synthesis: Synthesis) -> None:
    assert {r.inputs["kind"] for r in manifests(stack_synthesis)} == KINDS


def test_every_object_is_valid_for_the_clusters_kubernetes_version(stack_synthesis: Synthesis) -> None:
    version = stack_synthesis.one("aws:eks/cluster:Cluster").inputs["version"]
    for record in manifests(stack_synthesis):
        kubernetes_validate.validate(without_redacted(record.inputs), version, strict=True)


def test_strict_validation_catches_a_misspelled_field() -> None:
    service = next(r for r in manifests(synthesized("dev")) if r.inputs["kind"] == "Service")
    broken = {**service.inputs, "spec": {**service.inputs["spec"], "selectr": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.35", strict=True)


def test_gpu_and_https_variants_are_valid_too() -> None:
    synthesis = synthesized_variant("prod-gpu-https")
    for record in manifests(synthesis):
        kubernetes_validate.validate(without_redacted(record.inputs), "1.35", strict=True)
