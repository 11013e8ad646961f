"""Each policy rule passes on the committed stacks and fails on a crafted bad resource."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from infra.settings import PROJECT_DIR
from policy.rules import RULES, Resource, Rule
from review.records import Synthesis
from tests.support.stacks import STACKS, synthesized, synthesized_with


def resources(synthesis: Synthesis) -> list[Resource]:
    """The synthesized records as the policy engine would show them."""
    by_urn = {r.urn: Resource(r.type, r.name, r.inputs, r.options["protect"]) for r in synthesis.resources}
    for record in synthesis.resources:
        by_urn[record.urn].property_dependencies = {
            key: [by_urn[urn] for urn in urns if urn in by_urn] for key, urns in record.property_dependencies.items()}
    return list(by_urn.values())


def rule(name: str) -> Rule:
    return next(r for r in RULES if r.name == name)


def one(stack: str, type_: str, name: str | None = None) -> Resource:
    found = [r for r in resources(synthesized(stack)) if r.type == type_ and (name is None or r.name == name)]
    assert len(found) == 1, [r.name for r in found]
    return copy.deepcopy(found[0])


ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"


def prod_deployment() -> Resource:
    """prod's Deployment as `modelService.canary.enabled: false` declares it (the committed stacks run
    the model's pods with an Argo Rollout instead)."""
    model = yaml.safe_load((PROJECT_DIR / "Pulumi.prod.yaml").read_text())["config"]["model-serving:modelService"]
    synthesis = synthesized_with("prod", {"modelService": {**model, "canary": {"enabled": False}}})
    (deployment,) = [r for r in resources(synthesis) if r.type == "kubernetes:apps/v1:Deployment"]
    return copy.deepcopy(deployment)


def modified(resource: Resource, path: list[str | int], value: Any) -> Resource:
    target: Any = resource.props
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return resource


@pytest.mark.parametrize("stack", STACKS)
def test_every_committed_stack_passes_every_rule(stack: str) -> None:
    violations = [(r.name, resource.name, message) for resource in resources(synthesized(stack))
                  for r in RULES for message in r.violations(resource)]
    assert violations == []


def test_every_rule_applies_to_something_in_the_stacks() -> None:
    declared = resources(synthesized("prod"))
    for each in RULES:
        assert any(each.applies_to(resource.type) for resource in declared), each.name


REPOSITORY = "aws:ecr/repository:Repository"
CLUSTER = "aws:eks/cluster:Cluster"


def test_ecr_rule_fails_with_mutable_tags() -> None:
    repository = modified(one("dev", REPOSITORY), ["imageTagMutability"], "MUTABLE")
    assert rule("ecr-immutable-tags").violations(repository) == [
        "image tags must be immutable (imageTagMutability: IMMUTABLE)"]


def test_registry_scanning_rule_fails_without_a_scanning_rule() -> None:
    scanning = one("prod", "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration")
    assert rule("ecr-registry-scanning").violations(scanning) == []
    scanning.props["rules"][0]["scanFrequency"] = "MANUAL"
    assert rule("ecr-registry-scanning").violations(scanning)


def test_eks_secrets_rule_fails_without_encryption() -> None:
    cluster = one("dev", CLUSTER)
    del cluster.props["encryptionConfig"]
    assert rule("eks-secrets-encryption").violations(cluster)


def test_eks_logging_rule_names_the_missing_logs() -> None:
    cluster = modified(one("dev", CLUSTER), ["enabledClusterLogTypes"], ["api"])
    assert rule("eks-control-plane-logging").violations(cluster) == [
        "control-plane logs audit, authenticator must be enabled (enabledClusterLogTypes)"]


def test_eks_endpoint_rule_fails_for_an_open_prod_endpoint_only() -> None:
    open_prod = modified(one("prod", CLUSTER), ["vpcConfig", "publicAccessCidrs"], ["0.0.0.0/0"])
    assert rule("eks-no-open-endpoint-in-prod").violations(open_prod)
    default_open = one("prod", CLUSTER)
    del default_open.props["vpcConfig"]["publicAccessCidrs"]
    assert rule("eks-no-open-endpoint-in-prod").violations(default_open)
    assert rule("eks-no-open-endpoint-in-prod").violations(one("dev", CLUSTER)) == []  # dev is open on purpose


def test_node_rule_fails_for_imdsv1_or_two_hops() -> None:
    template = one("dev", "aws:ec2/launchTemplate:LaunchTemplate", "pool-system-nodes")
    modified(template, ["metadataOptions", "httpTokens"], "optional")
    modified(template, ["metadataOptions", "httpPutResponseHopLimit"], 2)
    assert len(rule("nodes-private-imdsv2").violations(template)) == 2


def test_node_rule_fails_for_a_public_subnet_or_no_launch_template() -> None:
    group = one("dev", "aws:eks/nodeGroup:NodeGroup", "pool-system-nodes")
    public = one("dev", "aws:ec2/subnet:Subnet", "network-public-us-east-1a")
    group.property_dependencies["subnetIds"].append(public)
    del group.props["launchTemplate"]
    messages = rule("nodes-private-imdsv2").violations(group)
    assert "nodes must run in private subnets only; network-public-us-east-1a is public" in messages
    assert "node groups must use a launch template that requires IMDSv2" in messages


def test_workload_rule_fails_for_root_privilege_escalation_no_limits_and_a_tag() -> None:
    deployment = prod_deployment()
    container = deployment.props["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["resources"] = {"requests": {"cpu": "1"}}
    container["image"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/model-server:latest"
    messages = rule("workload-restricted").violations(deployment)
    assert len(messages) == 4
    assert any("pinned by digest" in m for m in messages)


def test_workload_rule_skips_an_image_not_known_until_the_build() -> None:
    deployment = prod_deployment()
    deployment.props["spec"]["template"]["spec"]["containers"][0]["image"] = None  # unknown in a preview
    assert rule("workload-restricted").violations(deployment) == []


@pytest.mark.parametrize("type_", [REPOSITORY, "aws:kms/key:Key", "aws:efs/fileSystem:FileSystem"])
def test_stateful_rule_fails_for_an_unprotected_prod_resource(type_: str) -> None:
    resource = one("prod", type_)
    assert rule("stateful-protected-in-prod").violations(resource) == []
    resource.protect = False
    assert rule("stateful-protected-in-prod").violations(resource)
    assert rule("stateful-protected-in-prod").violations(one("dev", type_)) == []


def test_tags_rule_names_the_missing_tags() -> None:
    vpc = one("dev", "aws:ec2/vpc:Vpc")
    del vpc.props["tags"]["managed-by"]
    assert rule("required-tags").violations(vpc) == ["missing tags: managed-by"]
    untagged = one("dev", "aws:ec2/internetGateway:InternetGateway")
    del untagged.props["tags"]
    assert rule("required-tags").violations(untagged) == ["missing tags: project, stack, managed-by"]


# -- objects that charts render (pulumi preview registers a helm.v4.Chart's objects as resources) ---------

def chart_resources(variant: str) -> list[Resource]:
    from tests.support.charts import rendered_charts

    return [Resource(f"kubernetes:{obj['apiVersion']}:{obj['kind']}", obj["metadata"]["name"], copy.deepcopy(obj))
            for chart in rendered_charts(variant) for obj in chart.objects]


@pytest.mark.parametrize("variant", ["dev", "prod-gpu-https"])
def test_chart_rendered_objects_pass_every_rule(variant: str) -> None:
    rendered = chart_resources(variant)
    assert {"kubernetes:apps/v1:Deployment"} <= {r.type for r in rendered}
    violations = [(r.name, resource.name, message) for resource in rendered
                  for r in RULES for message in r.violations(resource)]
    assert violations == []


def test_a_chart_container_without_requests_is_refused() -> None:
    (controller,) = [r for r in chart_resources("dev") if r.type == "kubernetes:apps/v1:Deployment"
                     and "karpenter" in r.name]
    assert rule("containers-request-resources").violations(controller) == []
    del controller.props["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert rule("containers-request-resources").violations(controller) == [
        "container controller: cpu and memory requests are required "
        "(without them the pod is BestEffort, evicted first)"]


def test_a_privileged_container_outside_the_allow_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = one("prod", "kubernetes:apps/v1:DaemonSet")
    plugin.props["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    assert rule("no-unlisted-privileged-containers").violations(plugin) == [
        "container nvidia-device-plugin of kube-system/nvidia-device-plugin is privileged and not in "
        "PRIVILEGED_ALLOWED"]
    from policy import rules

    monkeypatch.setitem(rules.PRIVILEGED_ALLOWED, ("kube-system", "nvidia-device-plugin", "nvidia-device-plugin"),
                        "why it needs it")
    assert rule("no-unlisted-privileged-containers").violations(plugin) == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_restricted_rule_names_the_model_namespace(stack: str) -> None:
    """The namespace the program deploys the model server to, read from the synthesis rather than
    imported, so the test holds wherever infra/ keeps its NAMESPACE."""
    from policy.rules import MODEL_NAMESPACE

    assert one(stack, ROLLOUT).get("metadata", "namespace") == MODEL_NAMESPACE


# -- what each rule says, word for word, and where it looks ----------------------------------------------

def test_resource_paths_go_through_maps_and_lists_and_stop_at_anything_else() -> None:
    resource = Resource("t", "n", {"rules": [{"scanFrequency": "SCAN_ON_PUSH"}], "name": "x"})
    assert resource.get("rules", 0, "scanFrequency") == "SCAN_ON_PUSH"
    assert resource.get("rules", 1, "scanFrequency") is None  # past the end
    assert resource.get("name", 0) is None and resource.get("name", "first") is None  # into a string
    assert resource.get("rules", "scanFrequency") is None  # a list is not a map


def test_registry_scanning_rule_says_what_to_set() -> None:
    scanning = one("prod", "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration")
    scanning.props["rules"][0]["scanFrequency"] = "MANUAL"
    assert rule("ecr-registry-scanning").violations(scanning) == [
        "the registry must scan images on push or continuously (rules[].scanFrequency)"]


def test_secrets_and_endpoint_rules_say_what_to_set() -> None:
    cluster = one("prod", CLUSTER)
    del cluster.props["encryptionConfig"]
    cluster.props["vpcConfig"]["publicAccessCidrs"] = ["0.0.0.0/0"]
    assert rule("eks-secrets-encryption").violations(cluster) == [
        "Kubernetes secrets must be envelope-encrypted with KMS (encryptionConfig.resources: [secrets])"]
    assert rule("eks-no-open-endpoint-in-prod").violations(cluster) == [
        "the prod Kubernetes API must not be open to the internet (vpcConfig.publicAccessCidrs)"]
    cluster.props["vpcConfig"]["endpointPublicAccess"] = False  # a private endpoint: the CIDRs do not apply
    assert rule("eks-no-open-endpoint-in-prod").violations(cluster) == []


def test_node_rule_holds_karpenters_node_classes_to_imdsv2_with_one_hop() -> None:
    node_class = one("dev", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "karpenter-pools-gpu-class")
    assert rule("nodes-private-imdsv2").violations(node_class) == []
    modified(node_class, ["spec", "metadataOptions", "httpPutResponseHopLimit"], 2)
    assert rule("nodes-private-imdsv2").violations(node_class) == [
        "pods must not reach node credentials (metadataOptions.httpPutResponseHopLimit: 1)"]


def test_node_rules_say_what_to_set() -> None:
    template = one("dev", "aws:ec2/launchTemplate:LaunchTemplate", "pool-system-nodes")
    template.props["metadataOptions"] = {"httpTokens": "optional", "httpPutResponseHopLimit": 2}
    assert rule("nodes-private-imdsv2").violations(template) == [
        "nodes must require IMDSv2 (metadataOptions.httpTokens: required)",
        "pods must not reach node credentials (metadataOptions.httpPutResponseHopLimit: 1)"]


def test_a_subnet_that_gives_public_addresses_is_public() -> None:
    group = one("dev", "aws:eks/nodeGroup:NodeGroup", "pool-system-nodes")
    (subnet, *_) = group.property_dependencies["subnetIds"]
    subnet.props["mapPublicIpOnLaunch"] = True  # no load balancer tag, but nodes would get public addresses
    assert rule("nodes-private-imdsv2").violations(group) == [
        f"nodes must run in private subnets only; {subnet.name} is public"]
    group.property_dependencies = {}  # subnets not known yet in a preview: nothing to say about them
    assert rule("nodes-private-imdsv2").violations(group) == []


def test_stateful_rule_says_what_to_set() -> None:
    repository = one("prod", REPOSITORY)
    repository.protect = False
    assert rule("stateful-protected-in-prod").violations(repository) == [
        "stateful resources must be protected in prod (protect=True)"]


def model_pod(deployment: Resource) -> dict[str, Any]:
    pod: dict[str, Any] = deployment.props["spec"]["template"]["spec"]
    return pod


def test_the_restricted_rule_holds_init_containers_and_volumes_to_it_too() -> None:
    deployment = prod_deployment()
    pod = model_pod(deployment)
    pod["initContainers"] = [{"name": "setup", "image": "busybox@sha256:" + "0" * 64}]
    pod["volumes"] = [*pod.get("volumes", []), {"name": "host", "hostPath": {"path": "/var/run"}}]
    # runAsNonRoot and the seccomp profile come from the pod's security context; the rest is per container
    assert rule("workload-restricted").violations(deployment) == [
        *(f"container setup: {requirement}" for requirement in (
            "allowPrivilegeEscalation must be false", "capabilities must drop ALL",
            "readOnlyRootFilesystem must be true", "cpu and memory limits are required")),
        "hostPath volumes are not allowed"]
    del pod["securityContext"]
    assert rule("workload-restricted").violations(deployment)[:2] == [
        "container setup: runAsNonRoot must be true", "container setup: allowPrivilegeEscalation must be false"]


def test_the_restricted_rule_takes_the_pods_security_context_as_each_containers_default() -> None:
    deployment = prod_deployment()
    pod = model_pod(deployment)
    (container,) = pod["containers"]
    security = container.pop("securityContext")
    pod["securityContext"] = {**security, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}
    assert rule("workload-restricted").violations(deployment) == []


def test_requests_are_required_of_init_containers_and_cron_jobs() -> None:
    template = {"spec": {"initContainers": [{"name": "migrate", "image": "x"}],
                         "containers": [{"name": "run", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}
    cron = Resource("kubernetes:batch/v1:CronJob", "nightly",
                    {"metadata": {"name": "nightly"}, "spec": {"jobTemplate": {"spec": {"template": template}}}})
    assert rule("containers-request-resources").violations(cron) == [
        f"container {name}: cpu and memory requests are required (without them the pod is BestEffort, evicted first)"
        for name in ("migrate", "run")]


def test_a_privileged_container_without_a_namespace_is_named_in_default() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    job = Resource("kubernetes:batch/v1:Job", "j", {"metadata": {"name": "j"}, "spec": {"template": {"spec": pod}}})
    assert rule("no-unlisted-privileged-containers").violations(job) == [
        "container c of default/j is privileged and not in PRIVILEGED_ALLOWED"]


def test_a_workload_whose_pod_is_not_known_yet_has_nothing_to_say() -> None:
    pending = Resource("kubernetes:apps/v1:Deployment", "d", {"metadata": {"namespace": "model-serving"}})
    assert [message for each in RULES for message in each.violations(pending)] == []


def test_a_container_whose_name_is_not_known_yet_is_called_question_mark() -> None:
    """In a preview a container's name can be unknown; the message still says which rule it broke."""
    container = {"image": "x@sha256:" + "0" * 64, "securityContext": {"privileged": True}}
    pod = {"metadata": {"namespace": "model-serving", "name": "d"}, "spec": {"template": {"spec": {
        "containers": [container]}}}}
    deployment = Resource("kubernetes:apps/v1:Deployment", "d", pod)
    messages = [message for each in RULES for message in each.violations(deployment)]
    assert "container ?: runAsNonRoot must be true" in messages
    assert "container ?: cpu and memory requests are required (without them the pod is BestEffort, evicted first)" \
        in messages
    assert "container ? of model-serving/d is privileged and not in PRIVILEGED_ALLOWED" in messages
