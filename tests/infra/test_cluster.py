from __future__ import annotations

import json

from review.records import Synthesis
from tests.support.stacks import synthesized, synthesized_with

CLUSTER = "aws:eks/cluster:Cluster"


def test_cluster_settings(stack_synthesis: Synthesis) -> None:
    cluster = stack_synthesis.one(CLUSTER).inputs
    assert cluster["name"] == f"model-serving-{stack_synthesis.stack}"
    assert cluster["version"] == "1.35"
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}
    assert cluster["bootstrapSelfManagedAddons"] is False
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True


def test_secrets_are_encrypted_with_a_rotating_key_that_prod_protects() -> None:
    for stack in ("dev", "prod"):
        synthesis = synthesized(stack)
        key = synthesis.one("aws:kms/key:Key")
        assert key.inputs["enableKeyRotation"] is True
        assert key.options["protect"] is (stack == "prod")
        cluster = synthesis.one(CLUSTER).inputs
        assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:")
        assert cluster["deletionProtection"] is (stack == "prod")


def test_public_endpoint_follows_the_configured_cidrs() -> None:
    assert synthesized("prod").one(CLUSTER).inputs["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]
    private_only = synthesized_with("staging", {"endpointPublicAccessCidrs": []}).one(CLUSTER).inputs["vpcConfig"]
    assert private_only["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in private_only


def test_control_plane_logs_have_the_configured_retention() -> None:
    group = synthesized("prod").one("aws:cloudwatch/logGroup:LogGroup", "cluster-control-plane").inputs
    assert group == {**group, "name": "/aws/eks/model-serving-prod/cluster", "retentionInDays": 365}


def test_cluster_is_in_the_private_subnets_only(stack_synthesis: Synthesis) -> None:
    cluster = stack_synthesis.one(CLUSTER).inputs
    assert cluster["vpcConfig"]["subnetIds"] == stack_synthesis.outputs["privateSubnetIds"]


def test_access_entries_for_deployer_and_configured_admins() -> None:
    admin = "arn:aws:iam::123456789012:role/platform-admins"
    deployer = "arn:aws:iam::123456789012:role/deployer"  # the mocked caller's role
    synthesis = synthesized_with("dev", {"adminPrincipalArns": [admin, deployer]})
    entries = {r.inputs["principalArn"] for r in synthesis.of_type("aws:eks/accessEntry:AccessEntry")
               if r.inputs.get("type", "STANDARD") == "STANDARD"}
    assert entries == {admin, deployer}  # the deployer listed again is not entered twice
    associations = synthesis.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert {a.inputs["policyArn"] for a in associations} == {
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"}
    assert all(a.inputs["accessScope"] == {"type": "cluster"} for a in associations)


def role_policies(synthesis: Synthesis, role_name: str) -> set[str]:
    return {a.inputs["policyArn"].split("/")[-1]
            for a in synthesis.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if a.name.startswith(role_name + "-")}


def test_least_privilege_roles(stack_synthesis: Synthesis) -> None:
    assert role_policies(stack_synthesis, "cluster-control-plane") == {"AmazonEKSClusterPolicy"}
    # Nodes carry no CNI permissions: those go to the aws-node pod through Pod Identity.
    assert role_policies(stack_synthesis, "cluster-node") == {
        "AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly"}
    assert role_policies(stack_synthesis, "networking-vpc-cni") == {"AmazonEKS_CNI_Policy"}
    trust = {r.name: json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"]
             for r in stack_synthesis.of_type("aws:iam/role:Role")}
    assert trust["cluster-control-plane"] == "eks.amazonaws.com"
    assert trust["cluster-node"] == "ec2.amazonaws.com"
    assert trust["networking-vpc-cni"] == "pods.eks.amazonaws.com"


def test_explicit_addons_with_pinned_versions(stack_synthesis: Synthesis) -> None:
    addons = {r.inputs["addonName"]: r for r in stack_synthesis.of_type("aws:eks/addon:Addon")}
    assert {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"} <= set(addons)
    assert all("-eksbuild." in a.inputs["addonVersion"] for a in addons.values())
    vpc_cni = addons["vpc-cni"].inputs
    assert vpc_cni["podIdentityAssociations"][0]["serviceAccount"] == "aws-node"
    assert json.loads(vpc_cni["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_coredns_waits_for_nodes_and_nodes_wait_for_networking(stack_synthesis: Synthesis) -> None:
    by_name = {r.name: r for r in stack_synthesis.resources}
    coredns = by_name["core-coredns"]
    # A dependency on a component is a dependency on each of its children.
    # The system pool: with Karpenter its own node group, with cluster-autoscaler the CPU pool.
    assert any(dep.endswith("NodeGroup::pool-system-nodes") for dep in coredns.options["dependencies"])
    node_group = stack_synthesis.one("aws:eks/nodeGroup:NodeGroup", "pool-system-nodes")
    assert any(dep.endswith("Addon::networking-vpc-cni") for dep in node_group.options["dependencies"])


def test_kubeconfig_is_a_secret_using_aws_eks_get_token(stack_synthesis: Synthesis) -> None:
    assert stack_synthesis.outputs["kubeconfig"] == "[secret]"
    provider = stack_synthesis.one("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]"
    assert provider.inputs["clusterIdentifier"].startswith("arn:aws:eks:")


def test_kubeconfig_document() -> None:
    from infra.cluster import kubeconfig

    document = json.loads(kubeconfig("c", "https://example", "Q0E=", "eu-west-1"))
    user = document["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"] == ["eks", "get-token", "--cluster-name", "c", "--region", "eu-west-1", "--output", "json"]
    assert document["clusters"][0]["cluster"] == {"server": "https://example", "certificate-authority-data": "Q0E="}
