"""Release control: the Argo Rollouts controller the stack installs, rendered from its chart with the
program's values, cross-checked against its AWS identity, the stack's region, the CRDs the
workload's custom resources need and the ServiceMonitor that scrapes it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from review.records import Synthesis
from tests.support.charts import rendered_chart
from tests.support.graph import waits_for
from tests.support.scheduling import pod_spec, selector_matches
from tests.support.stacks import VARIANTS, synthesized_variant

CHART = "argo-rollouts"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
# What target-group verification calls (docs/features/traffic-management/alb.md), and nothing else.
TARGET_GROUP_READS = {
    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetHealth",
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def controller(variant: str) -> dict[str, Any]:
    return rendered_chart(variant, CHART).one("Deployment")


def controller_container(variant: str) -> dict[str, Any]:
    (container,) = pod_spec(controller(variant))["containers"]
    return container


def region(synthesis: Synthesis) -> str:
    return str(synthesis.one("pulumi:providers:aws").inputs["region"])


def test_the_controller_runs_the_patched_release_and_verifies_weights_in_the_stacks_region(variant: str) -> None:
    """v1.9.1 fixes CVE-2026-35469 (the chart ships v1.9.0). Pods cannot ask IMDS for the region
    (one hop) and the controller has no region flag: AWS_REGION it is."""
    container = controller_container(variant)
    image, tag = container["image"].rsplit(":", 1)
    assert (image, tag) == ("quay.io/argoproj/argo-rollouts", "v1.9.1")
    assert "--aws-verify-target-group" in container["args"]
    assert {"name": "AWS_REGION", "value": region(synthesized_variant(variant))} in container["env"]
    assert not [arg for arg in container["args"] if arg.startswith("--aws-region")]


def test_the_controllers_identity_is_the_account_it_runs_as(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    chart = rendered_chart(variant, CHART)
    (account,) = chart.of_kind("ServiceAccount")
    association = synthesis.one(ASSOCIATION, "rollouts-controller")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        account["metadata"]["namespace"], account["metadata"]["name"])
    assert pod_spec(controller(variant))["serviceAccountName"] == account["metadata"]["name"]
    assert association.inputs["clusterName"] == synthesis.one("aws:eks/cluster:Cluster").inputs["name"]
    # Its pods start only once the association exists: a pod started before runs without credentials.
    assert association.urn in waits_for(synthesis, chart.record)


def test_the_controller_may_only_describe_load_balancers(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    association = synthesis.one(ASSOCIATION, "rollouts-controller")
    (role,) = [synthesis.by_urn(urn) for urn in association.property_dependencies["roleArn"]
               if synthesis.by_urn(urn).type == "aws:iam/role:Role"]
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "pods.eks.amazonaws.com"}
    policies = [r for r in synthesis.of_type("aws:iam/rolePolicy:RolePolicy")
                if role.urn in r.property_dependencies.get("role", [])]
    assert [p.name for p in policies] == ["rollouts-controller"]
    assert not [a for a in synthesis.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if role.urn in a.property_dependencies.get("role", [])]
    (statement,) = json.loads(policies[0].inputs["policy"])["Statement"]
    assert statement["Effect"] == "Allow" and statement["Resource"] == "*"  # Describe* takes no resource ARNs
    assert set(statement["Action"]) == TARGET_GROUP_READS and len(statement["Action"]) == 6


def test_the_controller_may_rewrite_the_ingress_and_services_and_read_target_groups_only() -> None:
    """It writes the Ingress's action annotation and the ping/pong selectors, and reads the ALB
    controller's TargetGroupBindings; no other traffic router's RBAC is installed."""
    chart = rendered_chart("prod", CHART)
    (role,) = [r for r in chart.of_kind("ClusterRole") if r["metadata"]["name"] == "argo-rollouts"]
    grants = {(group, resource): set(rule["verbs"]) for rule in role["rules"] for group in rule["apiGroups"]
              for resource in rule["resources"]}
    assert {"update", "patch"} <= grants[("networking.k8s.io", "ingresses")]
    assert "patch" in grants[("", "services")]
    assert grants[("elbv2.k8s.aws", "targetgroupbindings")] == {"list", "get"}
    other_routers = {"networking.istio.io", "split.smi-spec.io", "getambassador.io", "appmesh.k8s.aws",
                     "traefik.io", "traefik.containo.us", "apisix.apache.org", "projectcontour.io",
                     "gateway.networking.k8s.io", "networking.gloo.solo.io"}
    assert not {group for group, _ in grants} & other_routers


def test_the_controller_is_highly_available_on_the_system_pool(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    deployment = controller(variant)
    spec = pod_spec(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert spec["priorityClassName"] == "system-cluster-critical"
    # The pool that always has nodes: the system node group with Karpenter, else a CPU pool with minSize >= 1.
    system = {synthesis.outputs["systemPool"]["pool"]} if "systemPool" in synthesis.outputs else {
        name for name, pool in synthesis.outputs["nodePools"].items() if not pool["gpu"] and pool["minSize"]}
    assert spec["nodeSelector"]["model-serving/pool"] in system
    (budget,) = rendered_chart(variant, CHART).of_kind("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert selector_matches(budget["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    resources = spec["containers"][0]["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_the_chart_installs_the_crds_the_workloads_custom_resources_need(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    chart = rendered_chart(variant, CHART)
    served = {(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
              for crd in chart.of_kind("CustomResourceDefinition") for version in crd["spec"]["versions"]
              if version.get("served", True)}
    declared = {(r.inputs["apiVersion"], r.inputs["kind"]) for r in synthesis.resources
                if r.type.startswith("kubernetes:argoproj.io/")}
    assert declared == {("argoproj.io/v1alpha1", "Rollout"), ("argoproj.io/v1alpha1", "AnalysisTemplate")}
    assert declared <= served
    # ...and they are created only once the chart (its CRDs) exists.
    for record in synthesis.resources:
        if record.type.startswith("kubernetes:argoproj.io/"):
            assert chart.record.urn in waits_for(synthesis, record), record.name


def test_the_rollouts_monitor_selects_the_metrics_service_on_a_port_it_has(variant: str) -> None:
    monitor = synthesized_variant(variant).object("ServiceMonitor", "argo-rollouts").inputs
    chart = rendered_chart(variant, CHART)
    services = [s for s in chart.of_kind("Service") if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
                and selector_matches(monitor["spec"]["selector"], s["metadata"].get("labels") or {})]
    assert [s["metadata"]["name"] for s in services] == ["argo-rollouts-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    # The Service reaches the controller's pods on the port it serves its metrics on.
    deployment = controller(variant)
    assert services[0]["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    container = controller_container(variant)
    (served,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert f"--metricsPort={served['containerPort']}" in container["args"]
    # rollout_info carries the Rollout's namespace: it must win over the target's (kube-system).
    assert endpoint["honorLabels"] is True
