"""Managed node groups: the workload pools with nodeProvisioner cluster-autoscaler, and the system pool
Karpenter stacks run their add-ons and controllers on."""

from __future__ import annotations

import pytest

from review.records import Synthesis
from tests.support.stacks import AUTOSCALED, STACKS, autoscaled, synthesized, synthesized_with

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


@pytest.fixture(params=STACKS)
def stack_synthesis(request: pytest.FixtureRequest) -> Synthesis:
    """Each committed stack with its workload pools as managed node groups."""
    return autoscaled(request.param)


def pool(synthesis: Synthesis, name: str) -> tuple[dict, dict, dict]:
    group = synthesis.one(NODE_GROUP, f"pool-{name}-nodes")
    template = synthesis.one(LAUNCH_TEMPLATE, f"pool-{name}-nodes")
    return group.inputs, group.options, template.inputs


def test_gpu_pool(stack_synthesis: Synthesis) -> None:
    group, options, _ = pool(stack_synthesis, "gpu")
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group["scalingConfig"]["minSize"] == 0
    assert group["labels"] == {"model-serving/pool": "gpu", "k8s.amazonaws.com/accelerator": "nvidia-a10g"}
    assert options["ignoreChanges"] == ["scalingConfig.desiredSize"]


def test_cpu_pool(stack_synthesis: Synthesis) -> None:
    group, options, _ = pool(stack_synthesis, "cpu")
    assert group["amiType"] == "AL2023_x86_64_STANDARD"
    assert group["taints"] == []
    assert group["labels"] == {"model-serving/pool": "cpu"}
    assert options["ignoreChanges"] == ["scalingConfig.desiredSize"]


def test_capacity_type_and_sizes_come_from_config() -> None:
    dev, _, _ = pool(autoscaled("dev"), "cpu")
    assert dev["capacityType"] == "SPOT"
    assert dev["instanceTypes"] == ["m7i.large", "m6i.large"]
    assert dev["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}
    prod, _, _ = pool(autoscaled("prod"), "cpu")
    assert prod["capacityType"] == "ON_DEMAND"
    assert prod["updateConfig"] == {"maxUnavailablePercentage": 20}


def test_launch_template_requires_imdsv2_with_one_hop_and_encrypts_the_root_volume(
        stack_synthesis: Synthesis) -> None:
    for name in ("cpu", "gpu"):
        group, _, template = pool(stack_synthesis, name)
        assert template["metadataOptions"] == {
            "httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
        (device,) = template["blockDeviceMappings"]
        assert device["deviceName"] == "/dev/xvda"
        assert device["ebs"]["volumeType"] == "gp3"
        assert device["ebs"]["encrypted"] == "true"
        assert group["launchTemplate"]["id"].startswith("lt-")


def test_root_volume_size_from_config() -> None:
    _, _, template = pool(autoscaled("prod"), "gpu")
    assert template["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 100


def test_nodes_run_in_private_subnets_only(stack_synthesis: Synthesis) -> None:
    private = stack_synthesis.outputs["privateSubnetIds"]
    for group in stack_synthesis.of_type(NODE_GROUP):
        assert group.inputs["subnetIds"] == private


def test_instances_and_volumes_are_tagged_through_the_launch_template(stack_synthesis: Synthesis) -> None:
    _, _, template = pool(stack_synthesis, "cpu")
    kinds = {spec["resourceType"]: spec["tags"] for spec in template["tagSpecifications"]}
    assert set(kinds) == {"instance", "volume", "network-interface"}
    assert all(tags["stack"] == stack_synthesis.stack and tags["node-pool"] == "cpu" for tags in kinds.values())


def test_adding_a_pool_does_not_rename_the_others() -> None:
    before = {r.urn for r in autoscaled("dev").resources}
    pools = {
        "cpu": {"instanceTypes": ["m7i.large", "m6i.large"], "capacityType": "SPOT", "minSize": 2, "maxSize": 4},
        "batch": {"instanceTypes": ["c7i.2xlarge"], "minSize": 0, "maxSize": 3},
        "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "minSize": 0, "maxSize": 1},
    }
    after = {r.urn for r in synthesized_with("dev", {**AUTOSCALED["dev"], "nodePools": pools}).resources}
    assert before <= after
    assert {u for u in after - before if "NodeGroup" in u} == {
        u for u in after if u.endswith("NodeGroup::pool-batch-nodes")}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_desired_size_starts_at_min_unless_set(stack: str) -> None:
    group, _, _ = pool(autoscaled(stack), "gpu")
    assert group["scalingConfig"]["desiredSize"] == 0


def test_every_managed_node_group_repairs_its_unhealthy_nodes(stack_synthesis: Synthesis) -> None:
    for synthesis in (stack_synthesis, synthesized(stack_synthesis.stack)):
        groups = synthesis.of_type(NODE_GROUP)
        assert groups and all(group.inputs["nodeRepairConfig"] == {"enabled": True} for group in groups)


@pytest.mark.parametrize("stack", STACKS)
def test_with_karpenter_only_the_system_pool_is_a_node_group_of_fixed_size_over_the_zones(stack: str) -> None:
    synthesis = synthesized(stack)
    (group,) = synthesis.of_type(NODE_GROUP)
    assert group.name == "pool-system-nodes"
    assert group.inputs["labels"] == {"model-serving/pool": "system"}
    assert group.inputs["taints"] == [] and group.inputs["capacityType"] == "ON_DEMAND"
    scaling = group.inputs["scalingConfig"]
    assert scaling["minSize"] == scaling["maxSize"] == scaling["desiredSize"] >= 2
    # Its size is config's alone: nothing autoscales it, so Pulumi ignores no change to it.
    assert not group.options.get("ignoreChanges")
    # EKS spreads a node group's nodes over the zones of its subnets: one private subnet per zone.
    assert group.inputs["subnetIds"] == synthesis.outputs["privateSubnetIds"]
    assert len(synthesis.outputs["privateSubnetIds"]) >= 2
    if stack == "prod":
        assert scaling["minSize"] == 3 == len(synthesis.outputs["privateSubnetIds"])
