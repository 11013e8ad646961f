"""Every Helm chart the program installs, rendered offline with real Helm and the program's values,
then validated and cross-checked against the rest of the program.

A cross-check fails when either side changes alone: the chart's values, the chart version, or
the resource it must agree with (cluster, node pools, IAM, the Ingress).
"""

from __future__ import annotations

import base64
import copy
import json
from collections import Counter
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from review.records import ResourceRecord, Synthesis
from review.rendering import RenderedChart, render
from tests.support.charts import rendered_chart, rendered_charts
from tests.support.graph import waits_for
from tests.support.manifests import crd_schemas, validate
from tests.support.scheduling import pod_spec, pool_nodes, pools_for, pools_with_room, requests, selector_matches
from tests.support.stacks import VARIANTS, synthesized_variant

# The provisioners: Karpenter (its two charts) or the cluster autoscaler, never both.
PROVISIONER_CHARTS = {"karpenter": {"karpenter-crd", "karpenter"}, "cluster-autoscaler": {"cluster-autoscaler"}}


def provisioner(variant: str) -> str:
    return str(VARIANTS[variant][1].get("nodeProvisioner", "karpenter"))

# What each chart must render. Counting kinds catches a chart that renders "successfully" without
# its workload, as cluster-autoscaler does when autoDiscovery.clusterName is missing.
REQUIRED_KINDS: dict[str, dict[str, int]] = {
    "aws-load-balancer-controller": {
        "Deployment": 1, "ServiceAccount": 1, "Service": 1, "Secret": 1, "MutatingWebhookConfiguration": 1,
        "ValidatingWebhookConfiguration": 1, "IngressClass": 1, "IngressClassParams": 1},
    "cluster-autoscaler": {"Deployment": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1},
    "metrics-server": {"Deployment": 1, "ServiceAccount": 1, "Service": 1, "APIService": 1},
    # The operator, Grafana and kube-state-metrics; node-exporter; the Prometheus and Alertmanager the
    # operator runs; the default rules and the scrape configs for the cluster's components.
    "kube-prometheus-stack": {"Deployment": 3, "DaemonSet": 1, "Prometheus": 1, "Alertmanager": 1,
                              "PrometheusRule": 10, "ServiceMonitor": 5, "Secret": 1},
    "dcgm-exporter": {"DaemonSet": 1, "ServiceMonitor": 1},
    "aws-for-fluent-bit": {"DaemonSet": 1, "ConfigMap": 1, "ServiceAccount": 1},
    # Release control and traffic-driven scaling: their CRDs are templates in these charts (so Helm
    # upgrades them), the controller, the metrics Service its ServiceMonitor selects.
    "argo-rollouts": {"Deployment": 1, "ServiceAccount": 1, "Service": 1, "CustomResourceDefinition": 5,
                      "ClusterRole": 1, "ClusterRoleBinding": 1, "PodDisruptionBudget": 1},
    # Karpenter's five CRDs, from the CRD chart only (the main chart is rendered with skipCrds); its
    # controller with its PodDisruptionBudget and metrics Service.
    "karpenter-crd": {"CustomResourceDefinition": 5},
    "karpenter": {"Deployment": 1, "ServiceAccount": 1, "Service": 1, "PodDisruptionBudget": 1, "ClusterRole": 3,
                  "ClusterRoleBinding": 2},
    # The operator, its metrics API server and its admission webhooks.
    "keda": {"Deployment": 3, "ServiceAccount": 3, "Service": 3, "CustomResourceDefinition": 6, "APIService": 1,
             "ValidatingWebhookConfiguration": 1, "ClusterRole": 1, "ClusterRoleBinding": 1},
}
# Kinds that run pods: built-in workloads, and the operator's Prometheus and Alertmanager.
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Prometheus", "Alertmanager"}
ALB_CONTROLLER = "aws-load-balancer-controller"
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def missing_kinds(chart: RenderedChart) -> dict[str, int]:
    """Kinds the chart must render but did not, with how many are missing."""
    counts = Counter(obj["kind"] for obj in chart.objects)
    return {kind: need - counts[kind] for kind, need in REQUIRED_KINDS[chart.record.name].items()
            if counts[kind] < need}


def declared_objects(synthesis: Synthesis) -> list[ResourceRecord]:
    """Kubernetes objects the program declares itself (not through a chart)."""
    return [r for r in synthesis.resources if r.type.startswith("kubernetes:") and r.custom
            and "helm.sh" not in r.type and not r.type.startswith("pulumi:")]


def workloads(variant: str) -> list[tuple[str, dict[str, Any]]]:
    """(where from, object) for every workload: rendered by a chart or declared by the program."""
    found = [(chart.record.name, obj) for chart in rendered_charts(variant) for obj in chart.objects
             if obj["kind"] in WORKLOAD_KINDS]
    found += [(record.name, record.inputs) for record in declared_objects(synthesized_variant(variant))
              if record.inputs["kind"] in WORKLOAD_KINDS]
    return found


def kubernetes_version(synthesis: Synthesis) -> str:
    return str(synthesis.one("aws:eks/cluster:Cluster").inputs["version"])


# -- each chart renders, with what it must contain, and validates --------------------------------------

def test_every_chart_renders_with_the_workloads_it_must_have(variant: str) -> None:
    charts = rendered_charts(variant)
    others = {name for names in PROVISIONER_CHARTS.values() for name in names} - PROVISIONER_CHARTS[
        provisioner(variant)]
    assert {chart.record.name for chart in charts} == set(REQUIRED_KINDS) - others, "a chart without expectations"
    for chart in charts:
        assert not missing_kinds(chart), f"{chart.record.name} rendered without {missing_kinds(chart)}"


def test_counting_kinds_catches_a_chart_that_renders_without_its_workload() -> None:
    record = rendered_chart("prod-cluster-autoscaler", "cluster-autoscaler").record
    values = copy.deepcopy(record.inputs["values"])
    del values["autoDiscovery"]
    assert missing_kinds(render(record, values=values)) == {"Deployment": 1}


def test_every_rendered_object_and_crd_is_strictly_valid(variant: str) -> None:
    version = kubernetes_version(synthesized_variant(variant))
    charts = rendered_charts(variant)
    custom = crd_schemas(crd for chart in charts for crd in chart.crds)
    for chart in charts:
        for crd in chart.crds:
            kubernetes_validate.validate(crd, version, strict=True)
        for obj in chart.objects:
            try:
                validate(obj, version, custom)
            except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
                pytest.fail(f"{chart.record.name}: {obj['kind']} {obj['metadata']['name']}: {error}")


def test_custom_resources_are_checked_against_their_crd() -> None:
    chart = rendered_chart("dev", ALB_CONTROLLER)
    custom = crd_schemas(chart.crds)
    params = chart.one("IngressClassParams")
    validate(params, "1.35", custom)
    with pytest.raises(jsonschema.ValidationError, match="scheem"):
        validate({**params, "spec": {"scheem": "internal"}}, "1.35", custom)


# -- cross-checks against the rest of the program --------------------------------------------------------

def test_pod_identity_associations_name_service_accounts_the_charts_create_and_run_as(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    addon_accounts = {(identity["serviceAccount"]) for addon in synthesis.of_type("aws:eks/addon:Addon")
                      for identity in addon.inputs.get("podIdentityAssociations", [])}
    ours = [a.inputs for a in synthesis.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")]
    assert ours
    for association in ours:
        account = (association["namespace"], association["serviceAccount"])
        assert account[1] not in addon_accounts
        created = [(obj["metadata"]["namespace"], obj["metadata"]["name"])
                   for chart in rendered_charts(variant) for obj in chart.of_kind("ServiceAccount")]
        assert account in created, f"no chart creates service account {account}"
        running_as = [obj for _, obj in workloads(variant)
                      if (obj["metadata"].get("namespace"), (pod_spec(obj) or {}).get("serviceAccountName"))
                      == account]
        assert running_as, f"nothing runs as {account}: its AWS permissions are unused"


def test_autoscaler_discovers_this_clusters_node_groups_in_this_region() -> None:
    variant = "prod-cluster-autoscaler"
    synthesis = synthesized_variant(variant)
    cluster = synthesis.one("aws:eks/cluster:Cluster").inputs["name"]
    region = synthesis.one("pulumi:providers:aws").inputs["region"]
    container = pod_spec(rendered_chart(variant, "cluster-autoscaler").one("Deployment"))["containers"][0]
    flags = dict(arg.split("=", 1) for arg in container["command"][1:])
    discovery_tags = flags["--node-group-auto-discovery"].removeprefix("asg:tag=").split(",")
    # EKS tags every managed node group's Auto Scaling group with these two keys.
    assert discovery_tags == ["k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{cluster}"]
    assert {group.inputs["clusterName"] for group in synthesis.of_type("aws:eks/nodeGroup:NodeGroup")} == {cluster}
    assert flags["--cloud-provider"] == "aws"
    assert {"name": "AWS_REGION", "value": region} in container["env"]
    # It may scale only the groups it discovers: its IAM condition names the same tag.
    policy = json.loads(synthesis.one("aws:iam/rolePolicy:RolePolicy", "autoscaler-autoscaler").inputs["policy"])
    (scaling,) = [s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert list(scaling["Condition"]["StringEquals"]) == [f"aws:ResourceTag/{discovery_tags[1]}"]
    release = kubernetes_version(synthesis)
    assert container["image"].rsplit(":", 1)[1].startswith(f"v{release}.")


def test_device_plugin_lands_on_gpu_nodes_and_only_there(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    nodes = pool_nodes(synthesis)
    gpu_pools = {node.pool for node in nodes if "k8s.amazonaws.com/accelerator" in node.labels}
    assert gpu_pools, "every variant has a GPU pool"
    (plugin,) = [obj for source, obj in workloads(variant) if obj["metadata"]["name"] == "nvidia-device-plugin"]
    assert pools_for(pod_spec(plugin) or {}, nodes) == gpu_pools


def test_every_workload_can_run_on_some_pool(variant: str) -> None:
    """A nodeSelector or affinity naming a label no pool carries leaves pods pending forever (or, for
    a DaemonSet, declares dead weight that never runs)."""
    nodes = pool_nodes(synthesized_variant(variant))
    for source, obj in workloads(variant):
        assert pools_for(pod_spec(obj) or {}, nodes), f"{source}: {obj['kind']} {obj['metadata']['name']} " \
                                                      "matches no node pool"


def test_controllers_run_on_the_pool_that_always_has_nodes(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    nodes = pool_nodes(synthesis)
    if provisioner(variant) == "karpenter":
        # The system node group: always on, and never a NodePool's, so never consolidated away.
        system = {synthesis.outputs["systemPool"]["pool"]}
        assert not [node for node in nodes if node.pool in system and node.karpenter]
    else:
        system = {name for name, pool in synthesis.outputs["nodePools"].items() if not pool["gpu"] and pool["minSize"]}
    for chart in rendered_charts(variant):
        for deployment in chart.of_kind("Deployment"):
            assert pools_for(pod_spec(deployment) or {}, nodes) <= system, chart.record.name


def test_load_balancer_controller_knows_this_cluster_region_and_vpc(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    chart = rendered_chart(variant, ALB_CONTROLLER)
    args = pod_spec(chart.one("Deployment"))["containers"][0]["args"]
    assert f"--cluster-name={synthesis.one('aws:eks/cluster:Cluster').inputs['name']}" in args
    assert f"--aws-region={synthesis.one('pulumi:providers:aws').inputs['region']}" in args
    assert f"--aws-vpc-id={synthesis.outputs['vpcId']}" in args


def test_the_model_ingress_uses_the_class_the_controller_serves(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    chart = rendered_chart(variant, ALB_CONTROLLER)
    ingress = synthesis.one("kubernetes:networking.k8s.io/v1:Ingress").inputs
    ingress_class = chart.one("IngressClass", ingress["spec"]["ingressClassName"])
    assert ingress_class["spec"]["controller"] == "ingress.k8s.aws/alb"
    assert f"--ingress-class={ingress['spec']['ingressClassName']}" in pod_spec(
        chart.one("Deployment"))["containers"][0]["args"]


# -- the controller's webhooks ---------------------------------------------------------------------------

def ca_bundles(chart: RenderedChart) -> set[str]:
    return {webhook["clientConfig"]["caBundle"] for kind in ("MutatingWebhookConfiguration",
                                                             "ValidatingWebhookConfiguration")
            for webhook in chart.one(kind)["webhooks"]}


def test_webhook_ca_is_the_same_across_upgrades() -> None:
    """A new CA on an upgrade makes the API server reject Service and Ingress writes with x509 errors
    until the controller reloads its secret."""
    record = rendered_chart("prod", ALB_CONTROLLER).record
    first, second = render(record, upgrade=True), render(record, upgrade=True)
    assert len(ca_bundles(first)) == 1
    assert ca_bundles(first) == ca_bundles(second)
    assert first.one("Secret")["data"]["tls.crt"] == second.one("Secret")["data"]["tls.crt"]
    ca_pem = record.inputs["values"]["webhookTLS"]["caCert"]
    assert ca_bundles(first) == {base64.b64encode(ca_pem.encode()).decode()}


def test_webhook_certificate_names_the_service_the_webhooks_call(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    chart = rendered_chart(variant, ALB_CONTROLLER)
    services = {(webhook["clientConfig"]["service"]["name"], webhook["clientConfig"]["service"]["namespace"])
                for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
                for webhook in chart.one(kind)["webhooks"]}
    assert services == {(WEBHOOK_SERVICE, "kube-system")}
    chart.one("Service", WEBHOOK_SERVICE)
    request = synthesis.one("tls:index/certRequest:CertRequest").inputs
    assert f"{WEBHOOK_SERVICE}.kube-system.svc" in request["dnsNames"]
    assert synthesis.one("tls:index/locallySignedCert:LocallySignedCert").inputs["allowedUses"] == [
        "server_auth", "digital_signature"]


def test_the_controller_does_not_intercept_every_new_service() -> None:
    webhooks = rendered_chart("prod", ALB_CONTROLLER).one("MutatingWebhookConfiguration")["webhooks"]
    assert not [w for w in webhooks if any("services" in rule["resources"] for rule in w["rules"])]


def _intercepted_kinds(chart: RenderedChart) -> list[dict[str, Any]]:
    """The controller's webhooks that reject what they cannot reach."""
    return [webhook for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
            for webhook in chart.one(kind)["webhooks"] if webhook["failurePolicy"] == "Fail"]


def _plural(kind: str) -> str:
    return {"Ingress": "ingresses", "IngressClass": "ingressclasses"}.get(kind, kind.lower() + "s")


def _created_objects(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The object itself and, for a workload, the pods it makes (labels from its template)."""
    created = [obj]
    if obj["kind"] in WORKLOAD_KINDS:
        template = (obj["spec"].get("template") or {}).get("metadata") or {}
        created.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"namespace": obj["metadata"].get("namespace"),
                                     "labels": template.get("labels") or {}}})
    return created


def _intercepted(obj: dict[str, Any], webhooks: list[dict[str, Any]], namespaces: dict[str, dict[str, str]]) -> bool:
    group = obj["apiVersion"].rsplit("/", 1)[0] if "/" in obj["apiVersion"] else ""
    namespace = obj["metadata"].get("namespace")
    namespace_labels = {"kubernetes.io/metadata.name": namespace or "", **namespaces.get(namespace or "", {})}
    return any(
        group in rule["apiGroups"] and _plural(obj["kind"]) in rule["resources"] and "CREATE" in rule["operations"]
        and selector_matches(webhook.get("namespaceSelector"), namespace_labels)
        and selector_matches(webhook.get("objectSelector"), obj["metadata"].get("labels") or {})
        for webhook in webhooks for rule in webhook["rules"])


def test_everything_the_controllers_webhooks_see_waits_for_its_release(variant: str) -> None:
    """Services, Ingresses, and whatever else a Fail webhook of the controller intercepts (pods in
    namespaces with readiness gates) must be created after the controller answers; this covers
    charts added later, by what they render."""
    synthesis = synthesized_variant(variant)
    controller = rendered_chart(variant, ALB_CONTROLLER)
    release_urn = controller.record.urn
    webhooks = _intercepted_kinds(controller)
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"].get("labels", {})
                  for r in synthesis.of_type("kubernetes:core/v1:Namespace")}
    creators: list[tuple[ResourceRecord, dict[str, Any]]] = [
        (chart.record, obj) for chart in rendered_charts(variant) if chart.record.name != ALB_CONTROLLER
        for obj in chart.objects]
    creators += [(record, record.inputs) for record in declared_objects(synthesis)]
    checked = 0
    for record, obj in creators:
        if obj["kind"] in ("Service", "Ingress") or any(
                _intercepted(created, webhooks, namespaces) for created in _created_objects(obj)):
            checked += 1
            assert release_urn in waits_for(synthesis, record), \
                f"{record.name} creates {obj['kind']} {obj['metadata'].get('name')} before the controller answers"
    assert checked >= 4  # the model's Service, Ingress and Deployment, and the charts' Services


def test_everything_on_the_cluster_waits_for_the_deployers_cluster_access(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    provider = synthesis.one("pulumi:providers:kubernetes")
    associations = {r.urn for r in synthesis.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
    assert associations and associations <= waits_for(synthesis, provider)
    on_cluster = [r for r in synthesis.resources if r.custom and r.type.startswith("kubernetes:")
                  and not r.type.startswith("pulumi:")]
    assert on_cluster and all(r.options["provider"] == provider.name for r in on_cluster)


# -- system add-ons: resources, priority, spread ---------------------------------------------------------

def test_every_system_container_has_requests_and_a_memory_limit(variant: str) -> None:
    for source, obj in workloads(variant):
        if obj["metadata"].get("namespace") not in ("kube-system", "monitoring"):
            continue
        pod = pod_spec(obj) or {}
        # The operator's custom resources carry their main container's resources in the spec.
        containers = [pod] if obj["kind"] in ("Prometheus", "Alertmanager") else [
            *pod.get("initContainers", []), *pod["containers"]]
        for container in containers:
            resources = container.get("resources") or {}
            where = f"{source}: {obj['metadata']['name']}/{container.get('name', obj['kind'])}"
            assert {"cpu", "memory"} <= set(resources.get("requests") or {}), f"{where} has no requests"
            assert "memory" in (resources.get("limits") or {}), f"{where} has no memory limit"


@pytest.mark.parametrize(("variant_name", "chart_name"), [
    ("prod", "aws-load-balancer-controller"), ("prod", "karpenter"), ("prod-cluster-autoscaler", "cluster-autoscaler")])
def test_controllers_that_keep_the_cluster_serving_are_cluster_critical(variant_name: str, chart_name: str) -> None:
    deployment = rendered_chart(variant_name, chart_name).one("Deployment")
    assert pod_spec(deployment)["priorityClassName"] == "system-cluster-critical"


def test_replicated_add_ons_spread_over_zones_and_nodes(variant: str) -> None:
    replicated = [(chart.record.name, obj) for chart in rendered_charts(variant)
                  for obj in chart.of_kind("Deployment") if obj["spec"].get("replicas", 1) > 1]
    expected = {"aws-load-balancer-controller", "metrics-server", "argo-rollouts"}
    if provisioner(variant) == "karpenter":
        expected.add("karpenter")
    assert {name for name, _ in replicated} == expected
    for name, deployment in replicated:
        pod = pod_spec(deployment)
        spread = pod["topologySpreadConstraints"]
        if name == "karpenter":
            # Hard over zones (the chart's default); over nodes by the chart's required anti-affinity.
            assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in spread] == [
                ("topology.kubernetes.io/zone", "DoNotSchedule")], name
            (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["topologyKey"] == "kubernetes.io/hostname", name
        else:
            assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, \
                name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(selector_matches(c["labelSelector"], labels) for c in spread), f"{name}: spreads no pod"


# -- scheduling: every workload lands somewhere, with room for what it asks --------------------------------

def test_every_workload_fits_some_pools_nodes_gpus_included(variant: str) -> None:
    """Labels, taints and tolerations, and the requests (cpu, memory, nvidia.com/gpu) against the largest
    node each pool can produce: a NodePool's within its limits, a node group's largest type."""
    synthesis = synthesized_variant(variant)
    nodes = pool_nodes(synthesis)
    assert {node.karpenter for node in nodes} == ({True, False} if provisioner(variant) == "karpenter" else {False})
    for source, obj in workloads(variant):
        pod = pod_spec(obj) or {}
        assert pools_with_room(pod, nodes), f"{source}: {obj['kind']} {obj['metadata']['name']} " \
                                            f"(requests {requests(pod)}) fits no pool's nodes"


def test_the_model_pods_land_on_their_pool_with_room_for_them(variant: str) -> None:
    synthesis = synthesized_variant(variant)
    nodes = pool_nodes(synthesis)
    (rollout,) = [r.inputs for r in synthesis.objects("Rollout")] or [r.inputs for r in synthesis.objects("Deployment")]
    pod = rollout["spec"]["template"]["spec"]
    pool = pod["nodeSelector"]["model-serving/pool"]
    assert pools_with_room(pod, nodes) == {pool}
    if requests(pod).get("nvidia.com/gpu"):
        assert all(node.capacity["nvidia.com/gpu"] >= requests(pod)["nvidia.com/gpu"]
                   for node in nodes if node.pool == pool)


def test_nothing_lands_on_the_gpu_pool_without_tolerating_its_taint(variant: str) -> None:
    nodes = pool_nodes(synthesized_variant(variant))
    gpu_nodes = [node for node in nodes if any(t["key"] == "nvidia.com/gpu" for t in node.taints)]
    assert gpu_nodes
    for source, obj in workloads(variant):
        pod = pod_spec(obj) or {}
        if any(pools_for(pod, [node]) for node in gpu_nodes):
            assert any(t.get("key") == "nvidia.com/gpu" or (t.get("operator") == "Exists" and not t.get("key"))
                       for t in pod.get("tolerations") or []), f"{source}: {obj['metadata']['name']}"
    # ...and a pod without the toleration is refused there (the simulation reads taints at all).
    assert not pools_for({"containers": [{"name": "x"}]}, gpu_nodes)
