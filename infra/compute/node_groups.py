"""NodePool: one EKS managed node group and its launch template: a workload pool with
cluster-autoscaler, or the system pool Karpenter stacks run their add-ons on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.compute.placement import EKS_TAINT_EFFECTS, GPU_TAINT, POOL_LABEL, ROOT_DEVICE, node_labels
from infra.identity import StackIdentity
from infra.settings import NodePoolSettings, SystemPoolSettings

EKS_GPU_TAINT: aws.eks.NodeGroupTaintArgsDict = {
    "key": GPU_TAINT["key"], "value": GPU_TAINT["value"], "effect": EKS_TAINT_EFFECTS[GPU_TAINT["effect"]]}
AMI_TYPES = {False: "AL2023_x86_64_STANDARD", True: "AL2023_x86_64_NVIDIA"}
# The system pool is replaced a third at a time on update (one node of two or three).
SYSTEM_MAX_UNAVAILABLE_PERCENTAGE = 33


@dataclass(frozen=True)
class NodeGroupSpec:
    """What a managed node group is made of, whichever setting it comes from."""

    instance_types: Sequence[str]
    gpu: bool
    capacity_type: str
    min_size: int
    max_size: int
    initial_size: int
    disk_size_gib: int
    max_unavailable_percentage: int
    labels: dict[str, str]
    # The cluster autoscaler owns an autoscaled group's count; only config changes a fixed one.
    autoscaled: bool

    @classmethod
    def of_pool(cls, pool_name: str, pool: NodePoolSettings) -> NodeGroupSpec:
        """A workload pool with cluster-autoscaler (its sizes are validated present then)."""
        assert pool.min_size is not None and pool.max_size is not None
        return cls(instance_types=pool.instance_types, gpu=pool.gpu, capacity_type=pool.capacity_type,
                   min_size=pool.min_size, max_size=pool.max_size, initial_size=pool.initial_size,
                   disk_size_gib=pool.disk_size_gib, max_unavailable_percentage=pool.max_unavailable_percentage,
                   labels=node_labels(pool_name, pool), autoscaled=True)

    @classmethod
    def of_system_pool(cls, pool_name: str, system: SystemPoolSettings) -> NodeGroupSpec:
        return cls(instance_types=system.instance_types, gpu=False, capacity_type="ON_DEMAND",
                   min_size=system.size, max_size=system.size, initial_size=system.size,
                   disk_size_gib=system.disk_size_gib, max_unavailable_percentage=SYSTEM_MAX_UNAVAILABLE_PERCENTAGE,
                   labels={POOL_LABEL: pool_name}, autoscaled=False)


@dataclass(frozen=True)
class NodePoolArgs:
    identity: StackIdentity
    pool_name: str
    spec: NodeGroupSpec
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    # Children do not inherit a component's depends_on: the node group itself waits for these.
    wait_for: Sequence[pulumi.Resource] = ()


class NodePool(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: NodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:nodes:NodePool", name, None, opts)
        identity, spec = args.identity, args.spec
        child = pulumi.ResourceOptions(parent=self)
        tags = {**identity.tags, "Name": f"{identity.name}-{args.pool_name}", "node-pool": args.pool_name}

        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-nodes",
            description=f"Nodes of pool {args.pool_name} in {identity.name}",
            metadata_options={
                "http_endpoint": "enabled",
                # IMDSv2 only, one hop: pods (one hop further away) cannot take the node's credentials.
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[{
                "device_name": ROOT_DEVICE,
                "ebs": {
                    "volume_size": spec.disk_size_gib,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }],
            # Managed node groups do not copy their tags to instances or volumes
            # (https://github.com/aws/containers-roadmap/issues/608).
            tag_specifications=[{"resource_type": kind, "tags": tags}
                                for kind in ("instance", "volume", "network-interface")],
            update_default_version=True,
            tags=tags,
            opts=child,
        )

        node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            cluster_name=args.cluster_name,
            node_role_arn=args.node_role_arn,
            subnet_ids=args.subnet_ids,
            ami_type=AMI_TYPES[spec.gpu],
            capacity_type=spec.capacity_type,
            instance_types=list(spec.instance_types),
            scaling_config={
                "min_size": spec.min_size,
                "max_size": spec.max_size,
                "desired_size": spec.initial_size,
            },
            update_config={"max_unavailable_percentage": spec.max_unavailable_percentage},
            # EKS replaces (or reboots) a node whose NodeConditions the node monitoring agent marks
            # unhealthy, past the condition's wait (https://docs.aws.amazon.com/eks/latest/userguide/node-repair.html).
            node_repair_config={"enabled": True},
            labels=spec.labels,
            taints=[EKS_GPU_TAINT] if spec.gpu else [],
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.wait_for),
                # The cluster autoscaler owns the node count once an autoscaled group exists.
                ignore_changes=["scalingConfig.desiredSize"] if spec.autoscaled else None,
            ),
        )
        self.node_group_name = node_group.node_group_name
        self.register_outputs({"nodeGroupName": self.node_group_name})
