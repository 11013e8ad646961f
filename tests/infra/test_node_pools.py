from __future__ import annotations

import pytest

from review.records import Synthesis
from tests.support.stacks import synthesized, synthesized_with

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


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
    dev, _, _ = pool(synthesized("dev"), "cpu")
    assert dev["capacityType"] == "SPOT"
    assert dev["instanceTypes"] == ["m7i.large", "m6i.large"]
    assert dev["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}
    prod, _, _ = pool(synthesized("prod"), "cpu")
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
    _, _, template = pool(synthesized("prod"), "gpu")
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
    before = {r.urn for r in synthesized("dev").resources}
    pools = {
        "cpu": {"instanceTypes": ["m7i.large", "m6i.large"], "capacityType": "SPOT", "minSize": 2, "maxSize": 4},
        "batch": {"instanceTypes": ["c7i.2xlarge"], "minSize": 0, "maxSize": 3},
        "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "minSize": 0, "maxSize": 1},
    }
    after = {r.urn for r in synthesized_with("dev", {"nodePools": pools}).resources}
    assert before <= after
    assert {u for u in after - before if "NodeGroup" in u} == {
        u for u in after if u.endswith("NodeGroup::pool-batch-nodes")}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_desired_size_starts_at_min_unless_set(stack: str) -> None:
    group, _, _ = pool(synthesized(stack), "gpu")
    assert group["scalingConfig"]["desiredSize"] == 0
