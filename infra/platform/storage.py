"""Storage: the default block StorageClass (EBS gp3) and a shared ReadWriteMany file system (EFS)
for the model service's prediction logs.

The CSI drivers themselves are EKS add-ons (infra/addons.py). Data outlives `pulumi destroy`
unless `retainDataOnDestroy` is false: the EFS file system is retained and both StorageClasses
keep released volumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.identity import StackIdentity
from infra.workload.contract import SERVER_UID

BLOCK_STORAGE_CLASS = "gp3"
SHARED_STORAGE_CLASS = "efs-shared"
NFS_PORT = 2049


@dataclass(frozen=True)
class StorageArgs:
    identity: StackIdentity
    retain_data_on_destroy: bool
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: Sequence[pulumi.Input[str]]


class Storage(pulumi.ComponentResource):
    shared_storage_class: str = SHARED_STORAGE_CLASS
    mount_targets: list[aws.efs.MountTarget]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:platform:Storage", name, None, opts)
        identity = args.identity
        child = pulumi.ResourceOptions(parent=self)
        reclaim_policy = "Retain" if args.retain_data_on_destroy else "Delete"

        k8s.storage.v1.StorageClass(
            f"{name}-{BLOCK_STORAGE_CLASS}",
            metadata={"name": BLOCK_STORAGE_CLASS,
                      "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true"},
            # Create the volume in the zone where its pod lands (an EBS volume is zonal).
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy=reclaim_policy,
            opts=child,
        )

        security_group = aws.ec2.SecurityGroup(
            f"{name}-efs",
            description=f"NFS to the shared file system of {identity.name}, from inside the VPC only",
            vpc_id=args.vpc_id,
            ingress=[{"protocol": "tcp", "from_port": NFS_PORT, "to_port": NFS_PORT,
                      "cidr_blocks": [args.vpc_cidr], "description": "NFS from the VPC"}],
            tags={**identity.tags, "Name": f"{identity.name}-efs"},
            opts=child,
        )
        file_system = aws.efs.FileSystem(
            f"{name}-shared",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode="elastic",
            # Prediction logs are written once and rarely read: let old ones move to cheaper storage.
            lifecycle_policies=[{"transition_to_ia": "AFTER_30_DAYS"}],
            tags={**identity.tags, "Name": f"{identity.name}-shared"},
            opts=pulumi.ResourceOptions(parent=self, protect=identity.production,
                                        retain_on_delete=args.retain_data_on_destroy),
        )
        self.mount_targets = [
            aws.efs.MountTarget(f"{name}-shared-{index}", file_system_id=file_system.id, subnet_id=subnet_id,
                                security_groups=[security_group.id], opts=child)
            for index, subnet_id in enumerate(args.private_subnet_ids)
        ]
        k8s.storage.v1.StorageClass(
            f"{name}-{SHARED_STORAGE_CLASS}",
            metadata={"name": SHARED_STORAGE_CLASS},
            provisioner="efs.csi.aws.com",
            parameters={
                # One EFS access point per volume, owned by the server's user so it can write.
                "provisioningMode": "efs-ap",
                "fileSystemId": file_system.id,
                "directoryPerms": "700",
                "uid": str(SERVER_UID),
                "gid": str(SERVER_UID),
                "basePath": "/volumes",
            },
            reclaim_policy=reclaim_policy,
            opts=child,
        )
        self.file_system_id = file_system.id
        self.register_outputs({"fileSystemId": self.file_system_id})
