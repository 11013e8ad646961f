"""Karpenter as the workload pools' provisioner: its controller's IAM and placement, interruption
handling, the node role, discovery tags, the EC2NodeClasses and NodePools, and the cross-checks that
fail when one side changes alone. The charts are rendered with real Helm (tests/support/charts.py).

Reference: Karpenter's CloudFormation template for v1.14.1 (../shared/reference, or upstream).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from infra.compute.placement import ACCELERATOR_LABEL, GPU_RESOURCE, GPU_TAINT, POOL_LABEL
from infra.versions import HELM_CHARTS, KUBERNETES_RELEASES
from review.records import ResourceRecord, Synthesis
from tests.support.charts import rendered_chart, rendered_charts
from tests.support.scheduling import pod_spec
from tests.support.stacks import STACKS, VARIANTS, autoscaled, synthesized, synthesized_variant, synthesized_with

REFERENCE_TEMPLATE_URL = ("https://raw.githubusercontent.com/aws/karpenter-provider-aws/v1.14.1/website/content/en/"
                          "v1.14/getting-started/getting-started-with-karpenter/cloudformation.yaml")
# Zonal shift is off (settings.enableZonalShift false): its read is the one policy left out.
UNUSED_POLICIES = {"ZonalShiftPolicy"}
KARPENTER_VARIANTS = sorted(v for v, (_, overrides) in VARIANTS.items()
                            if overrides.get("nodeProvisioner") != "cluster-autoscaler")
DISCOVERY_TAG = "karpenter.sh/discovery"


class _CloudFormation(yaml.SafeLoader):
    """Reads the template's short-form intrinsics (!Sub, !GetAtt, !Ref) as their plain values."""


for _tag in ("!Sub", "!GetAtt", "!Ref"):
    _CloudFormation.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node)  # type: ignore[arg-type]
                                    if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))


def outputs_of(synthesis: Synthesis, record: ResourceRecord) -> dict[str, Any]:
    """What the mocks reported for a resource (its physical name, ARN, computed fields)."""
    from review.mocks import RecordingMocks

    return RecordingMocks(synthesis.one("pulumi:providers:aws").inputs["region"]).outputs_of(record)


def reference_template() -> dict[str, Any]:
    from tests.support.shared import reference_file

    text = reference_file("karpenter-v1.14.1-cloudformation.yaml", REFERENCE_TEMPLATE_URL).read_text()
    return dict(yaml.load(text, Loader=_CloudFormation))  # a SafeLoader subclass


def reference_resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource["Properties"] for name, resource in reference_template()["Resources"].items()
            if resource["Type"] == kind}


def reference_policy(name: str) -> list[dict[str, Any]]:
    """A controller policy of the template: JSON inside `!Sub`, its ${...} placeholders made plain."""
    document = reference_resources("AWS::IAM::ManagedPolicy")[name]["PolicyDocument"]
    statements: list[dict[str, Any]] = json.loads(re.sub(r"\$\{[^}]+\}", "X", document))["Statement"]
    return statements


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def controller_statements(synthesis: Synthesis) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = json.loads(
        synthesis.one("aws:iam/rolePolicy:RolePolicy", "karpenter-controller").inputs["policy"])["Statement"]
    return statements


def chart_record(synthesis: Synthesis, name: str) -> ResourceRecord:
    return next(r for r in synthesis.resources if r.name == name and "helm.sh" in r.type)


def cluster_name(synthesis: Synthesis) -> str:
    return str(synthesis.one("aws:eks/cluster:Cluster").inputs["name"])


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the charts ------------------------------------------------------------------------------------------

def test_both_charts_are_pinned_from_the_oci_registry_crd_chart_first(stack: str) -> None:
    synthesis = synthesized(stack)
    crds, controller = chart_record(synthesis, "karpenter-crd"), chart_record(synthesis, "karpenter")
    for record, name in ((crds, "karpenter-crd"), (controller, "karpenter")):
        assert record.inputs["chart"] == f"oci://public.ecr.aws/karpenter/{name}"
        assert record.inputs["version"] == HELM_CHARTS[name].version == "1.14.1"
        assert "repositoryOpts" not in record.inputs
    from tests.support.graph import waits_for

    assert crds.urn in waits_for(synthesis, controller)
    # Helm never upgrades crds/: the main chart leaves them out, the CRD chart keeps them in templates/.
    assert controller.inputs["skipCrds"] is True and not crds.inputs.get("skipCrds")


def test_each_crd_is_declared_exactly_once() -> None:
    for variant in KARPENTER_VARIANTS:
        charts = rendered_charts(variant)
        declared = Counter(obj["metadata"]["name"] for chart in charts
                           for obj in [*chart.crds, *chart.of_kind("CustomResourceDefinition")])
        karpenter = {name: count for name, count in declared.items()
                     if name.endswith(("karpenter.sh", "karpenter.k8s.aws", "autoscaling.x-k8s.io"))}
        assert karpenter == {"ec2nodeclasses.karpenter.k8s.aws": 1, "nodeclaims.karpenter.sh": 1,
                             "nodeoverlays.karpenter.sh": 1, "nodepools.karpenter.sh": 1,
                             "capacitybuffers.autoscaling.x-k8s.io": 1}, variant
        assert all(count == 1 for count in declared.values()), variant


def test_skipping_the_main_charts_crds_is_what_keeps_them_single() -> None:
    """Without skipCrds the main chart would declare the same five CRDs again."""
    from review.rendering import render

    record = rendered_chart("dev", "karpenter").record
    record.inputs["skipCrds"] = False
    repeated = {crd["metadata"]["name"] for crd in render(record).crds}
    crd_chart = {obj["metadata"]["name"] for obj in rendered_chart("dev", "karpenter-crd").objects}
    assert repeated == crd_chart and len(crd_chart) == 5


def test_no_termination_handler_beside_karpenter() -> None:
    for variant in VARIANTS:
        names = {r.name for r in synthesized_variant(variant).resources if "helm.sh" in r.type}
        assert not [name for name in names if "termination-handler" in name]


def test_cluster_autoscaler_is_installed_for_node_groups_only() -> None:
    for variant in VARIANTS:
        synthesis = synthesized_variant(variant)
        charts = {r.name for r in synthesis.resources if "helm.sh" in r.type}
        karpenter = variant in KARPENTER_VARIANTS
        assert ("karpenter" in charts) is karpenter and ("karpenter-crd" in charts) is karpenter, variant
        assert ("cluster-autoscaler" in charts) is not karpenter, variant
        assert bool(synthesis.objects("NodePool")) is karpenter, variant


# -- the controller: placement, settings, identity -----------------------------------------------------

def test_controller_runs_on_the_system_node_group_cluster_critical_spread_over_zones(stack: str) -> None:
    deployment = rendered_chart(stack, "karpenter").one("Deployment")
    pod = pod_spec(deployment)
    assert pod["nodeSelector"][POOL_LABEL] == "system"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert deployment["spec"]["replicas"] == 2
    # Hard over zones (the chart's default): a soft spread would let both replicas share a zone.
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in pod["topologySpreadConstraints"]] == [
        ("topology.kubernetes.io/zone", "DoNotSchedule")]
    # Never on a node it manages, and its two replicas never on one node (the chart's affinity, kept).
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"} in term["matchExpressions"]
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    system = synthesized(stack).one("aws:eks/nodeGroup:NodeGroup", "pool-system-nodes").inputs
    assert system["labels"][POOL_LABEL] == "system" and system["scalingConfig"]["minSize"] >= 2


def test_controller_gets_its_region_from_the_environment(stack: str) -> None:
    synthesis = synthesized(stack)
    container = pod_spec(rendered_chart(stack, "karpenter").one("Deployment"))["containers"][0]
    region = synthesis.one("pulumi:providers:aws").inputs["region"]
    assert {"name": "AWS_REGION", "value": region} in container["env"]


def test_settings_name_the_cluster_and_the_queue_declared(stack: str) -> None:
    synthesis = synthesized(stack)
    container = pod_spec(rendered_chart(stack, "karpenter").one("Deployment"))["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    cluster = synthesis.one("aws:eks/cluster:Cluster")
    queue = synthesis.one("aws:sqs/queue:Queue", "karpenter-interruption")
    assert env["CLUSTER_NAME"] == cluster.inputs["name"]
    assert env["CLUSTER_ENDPOINT"] == synthesis.outputs["clusterEndpoint"]
    assert env["INTERRUPTION_QUEUE"] == queue.inputs["name"]
    # Alpha node repair stays off (README, "Node health").
    assert "NodeRepair=false" in env["FEATURE_GATES"]


def test_controller_service_account_is_the_one_its_pod_identity_names(stack: str) -> None:
    synthesis = synthesized(stack)
    chart = rendered_chart(stack, "karpenter")
    association = synthesis.one("aws:eks/podIdentityAssociation:PodIdentityAssociation",
                                "karpenter-controller").inputs
    (account,) = chart.of_kind("ServiceAccount")
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (
        association["namespace"], association["serviceAccount"])
    deployment = chart.one("Deployment")
    assert deployment["metadata"]["namespace"] == association["namespace"]
    assert pod_spec(deployment)["serviceAccountName"] == association["serviceAccount"]
    role = synthesis.one("aws:iam/role:Role", "karpenter-controller")
    assert association["roleArn"] == outputs_of(synthesis, role)["arn"]
    assert association["roleArn"] != outputs_of(synthesis, synthesis.one("aws:iam/role:Role", "karpenter-node"))["arn"]
    assert association["clusterName"] == cluster_name(synthesis)


def test_controller_policy_has_the_reference_templates_actions(stack: str) -> None:
    """Every action of the template's controller policies (zonal shift's read left out, as it is off),
    and no other: the expected set comes from the template itself."""
    synthesis = synthesized(stack)
    policies = reference_resources("AWS::IAM::ManagedPolicy")
    expected = {(statement["Sid"], action) for name in policies if name not in UNUSED_POLICIES
                for statement in reference_policy(name) for action in listed(statement["Action"])}
    ours = {(statement["Sid"], action) for statement in controller_statements(synthesis)
            for action in listed(statement["Action"])}
    assert ours == expected
    assert chart_record(synthesis, "karpenter").inputs["values"]["settings"].get("enableZonalShift", False) is False


def test_controller_policy_is_scoped_like_the_template(stack: str) -> None:
    """The same condition keys statement by statement, with this cluster's name in them; the template's
    any-account `*` narrowed to this account, and the role it may pass the node role only."""
    synthesis = synthesized(stack)
    cluster = cluster_name(synthesis)
    reference = {statement["Sid"]: statement for name in reference_resources("AWS::IAM::ManagedPolicy")
                 if name not in UNUSED_POLICIES for statement in reference_policy(name)}
    for statement in controller_statements(synthesis):
        theirs = reference[statement["Sid"]]
        keys = {(operator, key.replace(cluster, "X")) for operator, condition in statement.get("Condition", {}).items()
                for key in condition}
        assert keys == {(operator, key) for operator, condition in theirs.get("Condition", {}).items()
                        for key in condition}, statement["Sid"]
        for value in [v for condition in statement.get("Condition", {}).values() for v in condition.values()]:
            assert value != "X"
        for resource in listed(statement["Resource"]):
            assert ":*:" not in resource, f"{statement['Sid']}: {resource} is any account's"
    node_role = synthesis.one("aws:iam/role:Role", "karpenter-node")
    (passing,) = [s for s in controller_statements(synthesis) if s["Sid"] == "AllowPassingInstanceRole"]
    assert passing["Resource"] == outputs_of(synthesis, node_role)["arn"]
    owned = [s for s in controller_statements(synthesis) if "Condition" in s and any(
        f"kubernetes.io/cluster/{cluster}" in key for condition in s["Condition"].values() for key in condition)]
    assert len(owned) >= 8


# -- interruption handling -------------------------------------------------------------------------------

def test_interruption_queue_is_encrypted_short_lived_and_written_by_eventbridge_only(stack: str) -> None:
    synthesis = synthesized(stack)
    queue = synthesis.one("aws:sqs/queue:Queue", "karpenter-interruption").inputs
    (reference,) = reference_resources("AWS::SQS::Queue").values()
    assert queue["messageRetentionSeconds"] == reference["MessageRetentionPeriod"] == 300
    assert queue["sqsManagedSseEnabled"] is reference["SqsManagedSseEnabled"] is True
    policy = json.loads(synthesis.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruption").inputs["policy"])
    allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert {p for s in allows for p in listed(s["Principal"]["Service"])} == {"events.amazonaws.com",
                                                                              "sqs.amazonaws.com"}
    assert {a for s in allows for a in listed(s["Action"])} == {"sqs:SendMessage"}
    (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*" and listed(deny["Action"]) == ["sqs:*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    queue_arn = f"arn:aws:sqs:{synthesis.one('pulumi:providers:aws').inputs['region']}:123456789012:{queue['name']}"
    assert all(s["Resource"] == queue_arn for s in policy["Statement"])


def test_the_templates_five_event_rules_feed_the_queue(stack: str) -> None:
    synthesis = synthesized(stack)
    expected = sorted(json.dumps(rule["EventPattern"], sort_keys=True)
                      for rule in reference_resources("AWS::Events::Rule").values())
    rules = synthesis.of_type("aws:cloudwatch/eventRule:EventRule")
    assert len(expected) == 5
    assert sorted(json.dumps(json.loads(rule.inputs["eventPattern"]), sort_keys=True) for rule in rules) == expected
    queue = synthesis.one("aws:sqs/queue:Queue", "karpenter-interruption")
    targets = synthesis.of_type("aws:cloudwatch/eventTarget:EventTarget")
    # Each rule has exactly one target, which names that rule (its value and its dependency) and the queue.
    by_rule = Counter(urn for t in targets for urn in t.property_dependencies.get("rule", []))
    assert by_rule == Counter(r.urn for r in rules)
    for target in targets:
        (rule,) = [r for r in rules if [r.urn] == target.property_dependencies["rule"]]
        assert target.inputs["rule"] == outputs_of(synthesis, rule)["name"], target.name
        assert target.inputs["arn"] == outputs_of(synthesis, queue)["arn"], target.name
        assert target.property_dependencies["arn"] == [queue.urn], target.name


# -- nodes: role, access entry, discovery ---------------------------------------------------------------

def test_node_classes_use_the_role_that_has_the_ec2_linux_access_entry(stack: str) -> None:
    synthesis = synthesized(stack)
    (entry,) = [e for e in synthesis.of_type("aws:eks/accessEntry:AccessEntry") if e.inputs.get("type") == "EC2_LINUX"]
    role = synthesis.by_urn(entry.property_dependencies["principalArn"][0])
    assert role.type == "aws:iam/role:Role"
    assert entry.inputs["principalArn"] == outputs_of(synthesis, role)["arn"]
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    classes = synthesis.objects("EC2NodeClass")
    assert classes and all(entry.inputs["principalArn"].endswith(f":role/{c.inputs['spec']['role']}")
                           and role.urn in c.property_dependencies["spec"] for c in classes)


def _tags_of(record: ResourceRecord) -> dict[str, str]:
    return dict(record.inputs.get("tags") or {})


def selector_problems(synthesis: Synthesis) -> list[str]:
    """Where a node class's selectors miss: the subnet selector must find exactly the private subnets,
    the security-group selector exactly the cluster security group (which nodes carry), each through
    tags the program declares. The cluster's group is an output: the one the mocks reported for the
    cluster, and the Tag must take it from the cluster (its dependency)."""
    private = set(synthesis.outputs["privateSubnetIds"])
    subnets = synthesis.of_type("aws:ec2/subnet:Subnet")
    cluster = synthesis.one("aws:eks/cluster:Cluster")
    group_id = outputs_of(synthesis, cluster)["vpcConfig"]["clusterSecurityGroupId"]
    tags = synthesis.of_type("aws:ec2/tag:Tag")
    found_problems = []
    for node_class in synthesis.objects("EC2NodeClass"):
        spec = node_class.inputs["spec"]
        (subnet_term,) = spec["subnetSelectorTerms"]
        found = {s.id for s in subnets if subnet_term["tags"].items() <= _tags_of(s).items()}
        if found != private:
            found_problems.append(f"{node_class.name}: subnets {sorted(found)} are not the private {sorted(private)}")
        (group_term,) = spec["securityGroupSelectorTerms"]
        matching = [t for t in tags if group_term["tags"].items() <= {t.inputs["key"]: t.inputs["value"]}.items()]
        if [(t.inputs["resourceId"], t.property_dependencies.get("resourceId")) for t in matching] != [
                (group_id, [cluster.urn])]:
            found_problems.append(f"{node_class.name}: security groups tagged {group_term['tags']} are "
                                  f"{[t.inputs['resourceId'] for t in matching]}, not the cluster's {group_id}")
        if subnet_term["tags"] != {DISCOVERY_TAG: cluster_name(synthesis)}:
            found_problems.append(f"{node_class.name}: subnet selector {subnet_term['tags']}")
    return found_problems


def test_node_class_selectors_match_tags_really_declared(stack: str) -> None:
    assert selector_problems(synthesized(stack)) == []


def test_the_selector_check_fails_when_the_tag_goes_elsewhere() -> None:
    """The cross-check above can fail: the discovery tag on another security group (the node group's
    launch template's, say) or on no cluster output at all is reported."""
    synthesis = synthesized("dev")
    (tag,) = [t for t in synthesis.of_type("aws:ec2/tag:Tag") if t.inputs["key"] == DISCOVERY_TAG]
    other = synthesis.of_type("aws:ec2/securityGroup:SecurityGroup")
    tag.inputs["resourceId"] = other[0].id if other else "sg-0123456789abcdef0"
    assert selector_problems(synthesis)
    synthesis = synthesized("dev")
    (tag,) = [t for t in synthesis.of_type("aws:ec2/tag:Tag") if t.inputs["key"] == DISCOVERY_TAG]
    tag.property_dependencies["resourceId"] = []
    assert selector_problems(synthesis)


# -- EC2NodeClass and NodePool ---------------------------------------------------------------------------

def test_node_classes_pin_the_ami_require_imdsv2_and_encrypt_the_root_volume(stack: str) -> None:
    synthesis = synthesized(stack)
    version = synthesis.one("aws:eks/cluster:Cluster").inputs["version"]
    pools = synthesis.objects("NodePool")
    classes = {c.inputs["metadata"]["name"]: c.inputs["spec"] for c in synthesis.objects("EC2NodeClass")}
    assert set(classes) == {p.inputs["metadata"]["name"] for p in pools}
    for name, spec in classes.items():
        (term,) = spec["amiSelectorTerms"]
        assert term == {"alias": KUBERNETES_RELEASES[version].karpenter_ami_alias}
        assert re.fullmatch(r"al2023@v\d{8}", term["alias"])
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
        (device,) = spec["blockDeviceMappings"]
        assert device["rootVolume"] is True and device["deviceName"] == "/dev/xvda"
        assert device["ebs"]["volumeType"] == "gp3" and device["ebs"]["encrypted"] is True
        assert spec["tags"]["stack"] == stack and spec["tags"]["node-pool"] == name


def test_node_pools_follow_their_config(stack: str) -> None:
    from infra.settings import load_settings
    from review.stack_files import stack_config

    settings = load_settings(stack_config(stack)[0], project="model-serving", stack=stack)
    synthesis = synthesized(stack)
    for name, pool in settings.node_pools.items():
        spec = synthesis.object("NodePool", name).inputs["spec"]
        template = spec["template"]
        requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
        assert requirements.get("karpenter.k8s.aws/instance-category", []) == pool.instance_categories
        assert requirements.get("karpenter.k8s.aws/instance-family", []) == pool.instance_families
        assert requirements.get("node.kubernetes.io/instance-type", []) == pool.instance_types
        assert requirements["karpenter.sh/capacity-type"] == (
            ["spot", "on-demand"] if pool.capacity_type == "SPOT" else ["on-demand"])
        assert template["metadata"]["labels"][POOL_LABEL] == name
        assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name}
        assert pool.limits is not None
        assert spec["limits"]["cpu"] == str(pool.limits.cpu)
        assert pool.limits.memory is not None, f"{stack} {name}: the committed pools limit memory too"
        assert spec["limits"]["memory"] == pool.limits.memory
        disruption = spec["disruption"]
        assert disruption["budgets"] == [{"nodes": f"{pool.disruption.budget_percent}%"}]
        assert template["spec"]["expireAfter"] == pool.disruption.expire_after
        assert template["spec"]["terminationGracePeriod"] == pool.disruption.termination_grace_period
        if pool.gpu:
            assert template["spec"]["taints"] == [GPU_TAINT]
            assert ACCELERATOR_LABEL in template["metadata"]["labels"]
            assert spec["limits"][GPU_RESOURCE] == str(pool.limits.gpus)
            assert disruption["consolidationPolicy"] == "WhenEmpty"
        else:
            assert "taints" not in template["spec"]
            assert disruption["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


def test_gpu_pools_wait_longer_than_cpu_pools_before_consolidating(stack: str) -> None:
    from infra.settings.fields import duration_seconds

    synthesis = synthesized(stack)
    waits = {p.inputs["metadata"]["name"]: duration_seconds(p.inputs["spec"]["disruption"]["consolidateAfter"])
             for p in synthesis.objects("NodePool")}
    assert waits["gpu"] > waits["cpu"]


def test_disruption_and_families_come_from_config() -> None:
    pools = {"cpu": {"instanceFamilies": ["c7i", "m7i"], "capacityType": "SPOT", "limits": {"cpu": 16},
                     "disruption": {"consolidateAfter": "2m", "budgetPercent": 20, "expireAfter": "Never",
                                    "terminationGracePeriod": "30m"}},
             "gpu": {"instanceFamilies": ["g6"], "gpu": True, "limits": {"cpu": 16, "gpus": 2},
                     "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized"}}}
    synthesis = synthesized_with("dev", {"nodePools": pools})
    cpu = synthesis.object("NodePool", "cpu").inputs["spec"]
    assert cpu["disruption"] == {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "2m",
                                 "budgets": [{"nodes": "20%"}]}
    assert cpu["template"]["spec"]["expireAfter"] == "Never"
    assert cpu["template"]["spec"]["terminationGracePeriod"] == "30m"
    gpu = synthesis.object("NodePool", "gpu").inputs["spec"]
    assert {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6"]} in \
        gpu["template"]["spec"]["requirements"]
    assert gpu["template"]["metadata"]["labels"][ACCELERATOR_LABEL] == "nvidia-l4"
    assert gpu["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


def test_instance_categories_reach_the_node_pool_beside_families() -> None:
    from review.cost import node_pool_instance_types

    pools = {"cpu": {"instanceCategories": ["c", "m"], "instanceFamilies": ["m7i"], "limits": {"cpu": 16}},
             "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "limits": {"cpu": 8, "gpus": 2}}}
    synthesis = synthesized_with("dev", {"nodePools": pools})
    cpu = synthesis.object("NodePool", "cpu").inputs["spec"]
    requirements = cpu["template"]["spec"]["requirements"]
    assert {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m"]} in requirements
    assert {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["m7i"]} in requirements
    assert not [r for r in requirements if r["key"] == "node.kubernetes.io/instance-type"]
    region = synthesis.one("pulumi:providers:aws").inputs["region"]
    # Both requirements hold: the families among the categories; categories alone admit all their families.
    assert {t.split(".")[0] for t in node_pool_instance_types(cpu, region)} == {"m7i"}
    alone = {"template": {"spec": {"requirements": [
        {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c"]}]}}}
    assert {t.split(".")[0] for t in node_pool_instance_types(alone, region)} == {"c7i"}
    assert synthesis.outputs["nodePools"]["cpu"]["instanceCategories"] == ["c", "m"]


def test_node_pools_wait_for_the_controller_and_its_crds(stack: str) -> None:
    from tests.support.graph import waits_for

    synthesis = synthesized(stack)
    for record in [*synthesis.objects("NodePool"), *synthesis.objects("EC2NodeClass")]:
        waited = waits_for(synthesis, record)
        assert chart_record(synthesis, "karpenter-crd").urn in waited
        assert chart_record(synthesis, "karpenter").urn in waited


def test_canary_pods_are_not_disrupted_while_judged() -> None:
    rollout = synthesized("prod").object("Rollout", "model-server").inputs
    assert rollout["spec"]["strategy"]["canary"]["canaryMetadata"] == {
        "annotations": {"karpenter.sh/do-not-disrupt": "true"}}
    # Nothing to protect from a provisioner that never consolidates.
    autoscaled_rollout = autoscaled("prod").object("Rollout", "model-server").inputs
    assert "canaryMetadata" not in autoscaled_rollout["spec"]["strategy"]["canary"]


def test_model_pods_disruption_budget_counts_loading_pods_as_unavailable(stack: str) -> None:
    budget = synthesized(stack).object("PodDisruptionBudget", "model-server").inputs["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"


def test_node_monitoring_agent_is_installed_with_the_other_add_ons(stack: str) -> None:
    synthesis = synthesized(stack)
    version = synthesis.one("aws:eks/cluster:Cluster").inputs["version"]
    (agent,) = [a for a in synthesis.of_type("aws:eks/addon:Addon")
                if a.inputs["addonName"] == "eks-node-monitoring-agent"]
    assert agent.inputs["addonVersion"] == KUBERNETES_RELEASES[version].eks_addons["eks-node-monitoring-agent"]
    configuration = json.loads(agent.inputs["configurationValues"])
    assert configuration["dcgmAgent"]["tolerations"] == [{"key": GPU_RESOURCE, "operator": "Exists",
                                                           "effect": "NoSchedule"}]


# -- nodeProvisioner cluster-autoscaler: today's stack, unchanged ----------------------------------------

# main before Karpenter: the last program whose workload pools were managed node groups only. Move it
# forward (with AUTOSCALED in tests/support/stacks.py) only when cluster-autoscaler stacks are meant to change;
# a new image (app/ changed) is not such a change: its tag and digest are compared as placeholders.
BEFORE_KARPENTER = "745407512662276794175a051ea4467fb073f439"
# What node health adds to every stack, whichever the provisioner (issue 19): repair of managed node
# groups, the agent whose conditions it acts on, and a model disruption budget pinned to count loading
# pods as unavailable (IfHealthyBudget, the API's default when unset: no behaviour changes).
NODE_HEALTH_CHANGES = {
    "added": {"core-eks-node-monitoring-agent"},
    "changed": {("pool-cpu-nodes", "inputs.nodeRepairConfig.enabled"): (None, True),
                ("pool-gpu-nodes", "inputs.nodeRepairConfig.enabled"): (None, True),
                ("model-disruption-budget", "inputs.spec.unhealthyPodEvictionPolicy"): (None, "IfHealthyBudget")},
}


@pytest.mark.parametrize("stack_name", STACKS)
def test_cluster_autoscaler_mode_declares_what_main_declared_before_karpenter(stack_name: str) -> None:
    """Every resource, input by input (chart values included, so every rendered object), protection and
    ignored changes, and every output: the same as the program before Karpenter, but for node health."""
    from review.diff import _comparable, _flatten, _key
    from review.plan import synthesize_revision

    try:
        before = synthesize_revision(stack_name, BEFORE_KARPENTER)
    except ValueError as error:
        if os.environ.get("REQUIRE_HISTORY") == "1":
            pytest.fail(f"REQUIRE_HISTORY=1 but the program before Karpenter cannot be synthesized: {error}")
        pytest.skip(f"the program before Karpenter cannot be synthesized here (a shallow clone?): {error}")
    after = autoscaled(stack_name)
    old = {_key(r): r for r in before.resources}
    new = {_key(r): r for r in after.resources}
    assert not set(old) - set(new), "removed"
    assert set(new) - set(old) == NODE_HEALTH_CHANGES["added"]
    old_image, new_image = image_name(before.resources), image_name(after.resources)
    old_build, new_build = app_build(old_image), app_build(new_image)
    changed = {}
    for key in set(old) & set(new):
        was = {path: old_build(value) for path, value in _flatten(_comparable(old[key]))}
        now = {path: new_build(value) for path, value in _flatten(_comparable(new[key]))}
        changed.update({(key, path): (was.get(path), now.get(path)) for path in set(was) | set(now)
                        if was.get(path) != now.get(path)})
    if old_image != new_image:  # app/ changed since
        # The release wait's trigger digests the pods' template, image included (the template itself
        # is compared above, with the image's tag in placeholder).
        changed.pop(("model-release", "inputs.triggers"), None)
    assert changed == NODE_HEALTH_CHANGES["changed"]
    assert {k: old_build(v) for k, v in before.outputs.items()} == {k: new_build(v) for k, v in after.outputs.items()}


def image_name(resources: list[ResourceRecord]) -> str:
    return str(next(r for r in resources if r.type == "docker:index/image:Image").inputs["imageName"])


def app_build(name: str) -> Callable[[Any], Any]:
    """A value with the image's tag and (mock) digest in place of what app/'s content made them: what
    the program builds from app/ changes with the server, not with the provisioner."""
    placeholders = {name.rsplit(":", 1)[1]: "<app tag>", hashlib.sha256(name.encode()).hexdigest(): "<app digest>"}

    def normalised(value: Any) -> Any:
        if isinstance(value, str):
            for made, placeholder in placeholders.items():
                value = value.replace(made, placeholder)
        return value

    return normalised


# -- the CRDs' CEL rules (x-kubernetes-validations), which JSON Schema cannot check ---------------------

def karpenter_crds(variant: str) -> list[dict[str, Any]]:
    return rendered_chart(variant, "karpenter-crd").of_kind("CustomResourceDefinition")


@pytest.mark.parametrize("variant", KARPENTER_VARIANTS)
def test_every_node_class_and_node_pool_passes_its_crds_cel_rules(variant: str) -> None:
    from tests.support.cel import crd_schema, violations

    synthesis = synthesized_variant(variant)
    crds = karpenter_crds(variant)
    declared = [*synthesis.objects("EC2NodeClass"), *synthesis.objects("NodePool")]
    assert len(declared) == 2 * len(synthesis.objects("NodePool")) >= 2
    for record in declared:
        schema = crd_schema(crds, record.inputs["apiVersion"], record.inputs["kind"])
        assert not list(violations(schema, record.inputs)), record.name


def test_the_cel_check_catches_what_the_api_server_would_refuse() -> None:
    from tests.support.cel import crd_schema, violations

    synthesis, crds = synthesized("dev"), karpenter_crds("dev")
    pool = synthesis.object("NodePool", "gpu").inputs
    schema = crd_schema(crds, pool["apiVersion"], "NodePool")
    restricted = json.loads(json.dumps(pool))
    restricted["spec"]["template"]["metadata"]["labels"]["karpenter.sh/nodepool"] = "gpu"
    assert {v.path for v in violations(schema, restricted)} == {".spec.template.metadata.labels"}
    node_class = synthesis.object("EC2NodeClass", "gpu").inputs
    schema = crd_schema(crds, node_class["apiVersion"], "EC2NodeClass")
    two_roots = json.loads(json.dumps(node_class))
    two_roots["spec"]["blockDeviceMappings"].append({**two_roots["spec"]["blockDeviceMappings"][0],
                                                     "deviceName": "/dev/xvdb"})
    cluster_tag = json.loads(json.dumps(node_class))
    cluster_tag["spec"]["tags"]["kubernetes.io/cluster/x"] = "owned"
    assert [v.path for v in violations(schema, two_roots)] == [".spec.blockDeviceMappings"]
    assert [v.path for v in violations(schema, cluster_tag)] == [".spec.tags"]


def test_the_rules_left_unchecked_are_the_transition_rules_the_readme_lists() -> None:
    """Rules reading oldSelf compare an update with what is stored; on create there is nothing to compare."""
    from infra.settings import PROJECT_DIR
    from tests.support.cel import is_transition, rules

    readme = (PROJECT_DIR / "README.md").read_text()
    for crd in karpenter_crds("dev"):
        if crd["spec"]["names"]["kind"] not in ("NodePool", "EC2NodeClass"):
            continue
        for version in crd["spec"]["versions"]:
            for rule in rules(version["schema"]["openAPIV3Schema"]):
                if is_transition(rule.rule):
                    assert f"`{rule.rule}`" in readme, f"{crd['spec']['names']['kind']} {rule.path}: {rule.rule}"
