"""Cluster add-ons: IAM through Pod Identity, pinned Helm charts with the values they need, storage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.versions import HELM_CHARTS
from review.records import Synthesis
from tests.support.stacks import STACKS, autoscaled, synthesized

# AWS's published policy for the controller release the chart runs (../shared/reference, or upstream).
REFERENCE_POLICY_URL = ("https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/v3.5.0/"
                        "docs/install/iam_policy.json")
# Shield and classic WAF are never used: the Helm values turn them off. WAFv2 (and attaching a web
# ACL to a balancer) only with the stack's WAF on.
NEVER_USED = ("shield:", "waf-regional:")
WAF_ONLY = ("wafv2:", "elasticloadbalancing:SetWebAcl")


def reference_actions() -> set[str]:
    from tests.support.shared import reference_file

    document = json.loads(reference_file("aws-load-balancer-controller-v3.5.0-iam-policy.json",
                                         REFERENCE_POLICY_URL).read_text())
    found = set()
    for statement in document["Statement"]:
        listed = statement["Action"]
        found.update([listed] if isinstance(listed, str) else listed)
    return found


AUTOSCALER_ACTIONS = {
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
    "autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup",
}


@pytest.fixture(params=STACKS)
def autoscaled_synthesis(request: pytest.FixtureRequest) -> Synthesis:
    """A committed stack with nodeProvisioner cluster-autoscaler (its former managed node groups)."""
    return autoscaled(request.param)


def policy(synthesis: Synthesis, name: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = json.loads(synthesis.one("aws:iam/rolePolicy:RolePolicy", name).inputs[
        "policy"])["Statement"]
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for statement in statements for action in statement["Action"]}


def values(synthesis: Synthesis, name: str) -> dict[str, Any]:
    record = next(r for r in synthesis.resources if r.name == name and "helm.sh" in r.type)
    return dict(record.inputs["values"])


def test_load_balancer_controller_policy_covers_every_call_without_wildcard_actions(
        stack_synthesis: Synthesis) -> None:
    """Exactly the reference policy's actions, less the features switched off: WAFv2 only with WAF on."""
    statements = policy(stack_synthesis, "ingress-controller")
    chart_values = values(stack_synthesis, "aws-load-balancer-controller")
    waf = stack_synthesis.stack == "prod"  # the committed stack with WAF on
    expected = {a for a in reference_actions() if not a.startswith(NEVER_USED) and (waf or not a.startswith(WAF_ONLY))}
    assert actions(statements) == expected
    assert not [a for a in actions(statements) if "*" in a]
    cluster = f"model-serving-{stack_synthesis.stack}"
    writes = [s for s in statements if s["Sid"] in ("ManageOwnBalancers", "ManageOwnSecurityGroups")]
    assert writes and all(s["Condition"] == {"StringEquals": {"aws:ResourceTag/elbv2.k8s.aws/cluster": cluster}}
                          for s in writes)
    assert (chart_values["enableWaf"], chart_values["enableWafv2"], chart_values["enableShield"]) == (
        False, waf, False)


def test_autoscaler_policy_limits_writes_to_this_clusters_groups(autoscaled_synthesis: Synthesis) -> None:
    statements = policy(autoscaled_synthesis, "autoscaler-autoscaler")
    assert actions(statements) == AUTOSCALER_ACTIONS
    assert not [a for a in actions(statements) if "*" in a]
    cluster = f"model-serving-{autoscaled_synthesis.stack}"
    (writes,) = [s for s in statements if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert set(writes["Action"]) == {"autoscaling:SetDesiredCapacity",
                                     "autoscaling:TerminateInstanceInAutoScalingGroup"}
    assert writes["Condition"] == {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}}
    (describe,) = [s for s in statements if s["Action"] == ["eks:DescribeNodegroup"]]
    assert describe["Resource"].endswith(f":nodegroup/{cluster}/*/*")


@pytest.mark.parametrize("provisioner", ["karpenter", "cluster-autoscaler"])
def test_pod_identity_binds_each_role_to_its_service_account(stack_synthesis: Synthesis, provisioner: str) -> None:
    if provisioner == "cluster-autoscaler":
        stack_synthesis = autoscaled(stack_synthesis.stack)
    bound = {(a.inputs["namespace"], a.inputs["serviceAccount"])
             for a in stack_synthesis.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")}
    assert bound == {("kube-system", "aws-load-balancer-controller"), ("kube-system", provisioner),
                     ("kube-system", "aws-for-fluent-bit"), ("monitoring", "alertmanager"),
                     ("kube-system", "argo-rollouts")}
    addon_accounts = {a.inputs["addonName"]: a.inputs["podIdentityAssociations"][0]["serviceAccount"]
                      for a in stack_synthesis.of_type("aws:eks/addon:Addon")
                      if a.inputs.get("podIdentityAssociations")}
    assert addon_accounts == {"vpc-cni": "aws-node", "aws-ebs-csi-driver": "ebs-csi-controller-sa",
                              "aws-efs-csi-driver": "efs-csi-controller-sa"}
    chart_values = values(stack_synthesis, "aws-load-balancer-controller")
    assert chart_values["serviceAccount"]["name"] == "aws-load-balancer-controller"
    if provisioner == "cluster-autoscaler":
        assert values(stack_synthesis, "cluster-autoscaler")["rbac"]["serviceAccount"]["name"] == "cluster-autoscaler"
    else:
        assert values(stack_synthesis, "karpenter")["serviceAccount"]["name"] == "karpenter"


def test_storage_drivers_use_the_aws_managed_policies(stack_synthesis: Synthesis) -> None:
    attached = {a.inputs["policyArn"] for a in stack_synthesis.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a.name.startswith("core-")}
    assert attached == {"arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
                        "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"}


@pytest.mark.parametrize("chart", sorted(HELM_CHARTS))
def test_helm_charts_are_pinned(chart: str) -> None:
    pinned = HELM_CHARTS[chart]
    synthesis = autoscaled("prod") if chart == "cluster-autoscaler" else synthesized("prod")
    record = next(r for r in synthesis.resources if r.name == chart and "helm.sh" in r.type)
    assert record.inputs["version"] == pinned.version
    if pinned.oci:
        # An OCI chart is named by its reference, without repository options.
        assert record.inputs["chart"] == f"{pinned.repository}/{chart}" and "repositoryOpts" not in record.inputs
    else:
        assert record.inputs["repositoryOpts"]["repo"] == pinned.repository
        assert record.inputs["chart"] == chart


def test_helm_chart_versions_are_the_checked_ones() -> None:
    assert {name: chart.version for name, chart in HELM_CHARTS.items()} == {
        "aws-load-balancer-controller": "3.5.0", "cluster-autoscaler": "9.59.0", "metrics-server": "3.13.1",
        "kube-prometheus-stack": "88.5.3", "dcgm-exporter": "4.8.2", "aws-for-fluent-bit": "0.2.0",
        "argo-rollouts": "2.41.0", "keda": "2.20.2", "karpenter-crd": "1.14.1", "karpenter": "1.14.1"}


def test_ingress_controller_gets_cluster_region_and_vpc_explicitly(stack_synthesis: Synthesis) -> None:
    chart_values = values(stack_synthesis, "aws-load-balancer-controller")
    region = stack_synthesis.one("pulumi:providers:aws").inputs["region"]
    assert chart_values["clusterName"] == f"model-serving-{stack_synthesis.stack}"
    assert chart_values["region"] == region
    assert chart_values["vpcId"] == stack_synthesis.outputs["vpcId"]
    assert chart_values["replicaCount"] == 2
    assert chart_values["podDisruptionBudget"] == {"maxUnavailable": 1}
    # The system node group Karpenter never manages.
    assert chart_values["nodeSelector"] == {"model-serving/pool": "system"}
    release = stack_synthesis.one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["atomic"] is True


def test_autoscaler_discovers_this_cluster_and_runs_the_matching_release(autoscaled_synthesis: Synthesis) -> None:
    chart_values = values(autoscaled_synthesis, "cluster-autoscaler")
    assert chart_values["autoDiscovery"] == {"clusterName": f"model-serving-{autoscaled_synthesis.stack}"}
    assert chart_values["awsRegion"] == autoscaled_synthesis.one("pulumi:providers:aws").inputs["region"]
    assert chart_values["image"]["tag"].startswith("v1.35.")
    # Each pool is one node group over every zone; no two pools are similar, so nothing to balance.
    assert "balance-similar-node-groups" not in chart_values["extraArgs"]
    assert chart_values["extraArgs"]["expander"] == "least-waste"
    assert chart_values["extraArgs"]["scale-down-unneeded-time"] == "10m"


def test_gpu_pool_can_scale_from_zero_and_back(autoscaled_synthesis: Synthesis) -> None:
    """Everything the autoscaler needs to add a GPU node for a pending nvidia.com/gpu pod when
    the pool has none, and to remove it when idle."""
    group = autoscaled_synthesis.one("aws:eks/nodeGroup:NodeGroup", "pool-gpu-nodes")
    assert group.inputs["scalingConfig"]["minSize"] == 0
    assert group.options["ignoreChanges"] == ["scalingConfig.desiredSize"]
    # Labels and taints it reads through eks:DescribeNodegroup to build a template node...
    assert group.inputs["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia-a10g"
    assert group.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert "eks:DescribeNodegroup" in actions(policy(autoscaled_synthesis, "autoscaler-autoscaler"))
    # ...the device plugin that then advertises the GPUs, only on GPU nodes...
    plugin = autoscaled_synthesis.one("kubernetes:apps/v1:DaemonSet", "gpu-device-plugin").inputs["spec"][
        "template"]["spec"]
    terms = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "k8s.amazonaws.com/accelerator", "operator": "Exists"}]}]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in plugin["tolerations"]
    # ...and scale-down that does not keep a node for a pod's emptyDir.
    assert values(autoscaled_synthesis, "cluster-autoscaler")["extraArgs"]["skip-nodes-with-local-storage"] is False


def test_metrics_server_for_the_hpa(stack_synthesis: Synthesis) -> None:
    assert values(stack_synthesis, "metrics-server")["replicas"] == 2


def test_default_storage_class_is_encrypted_gp3_bound_at_first_consumer(stack_synthesis: Synthesis) -> None:
    (gp3,) = [r.inputs for r in stack_synthesis.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
              if r.inputs["provisioner"] == "ebs.csi.aws.com"]
    assert gp3["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert gp3["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert gp3["volumeBindingMode"] == "WaitForFirstConsumer"
    assert gp3["allowVolumeExpansion"] is True


def test_shared_file_system_is_encrypted_reachable_only_from_the_vpc(stack_synthesis: Synthesis) -> None:
    file_system = stack_synthesis.one("aws:efs/fileSystem:FileSystem")
    assert file_system.inputs["encrypted"] is True
    mounts = stack_synthesis.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(m.inputs["subnetId"] for m in mounts) == sorted(stack_synthesis.outputs["privateSubnetIds"])
    group = stack_synthesis.one("aws:ec2/securityGroup:SecurityGroup", "storage-efs").inputs
    vpc_cidr = stack_synthesis.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"]
    assert group["ingress"] == [{"protocol": "tcp", "fromPort": 2049, "toPort": 2049, "cidrBlocks": [vpc_cidr],
                                 "description": "NFS from the VPC"}]
    assert "egress" not in group or group["egress"] == []
    (efs_class,) = [r.inputs for r in stack_synthesis.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
                    if r.inputs["provisioner"] == "efs.csi.aws.com"]
    assert efs_class["parameters"]["fileSystemId"] == file_system.id  # the file system declared above
    assert (efs_class["parameters"]["uid"], efs_class["parameters"]["gid"]) == ("10001", "10001")


@pytest.mark.parametrize(("stack", "retained"), [("dev", False), ("staging", True), ("prod", True)])
def test_data_is_retained_on_destroy_unless_config_says_otherwise(stack: str, retained: bool) -> None:
    synthesis = synthesized(stack)
    file_system = synthesis.one("aws:efs/fileSystem:FileSystem")
    assert file_system.options["retainOnDelete"] is retained
    assert file_system.options["protect"] is (stack == "prod")
    policies = {r.inputs["reclaimPolicy"] for r in synthesis.of_type("kubernetes:storage.k8s.io/v1:StorageClass")}
    assert policies == {"Retain" if retained else "Delete"}
