"""The policy pack's adapter (policy/__main__.py), for real: Pulumi's PolicyResource objects in, the rules'
violations out through report_violation, every policy mandatory, and the pack served as the engine runs it."""

from __future__ import annotations

import importlib.util
import select
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)

from infra.settings import PROJECT_DIR

POLICY_DIR = PROJECT_DIR / "policy"


def load_pack() -> ModuleType:
    """policy/__main__.py under another name, so it defines the pack without serving it; with policy/ on
    sys.path for its `from rules import ...`, as when the engine runs it."""
    spec = importlib.util.spec_from_file_location("policy_pack", POLICY_DIR / "__main__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(POLICY_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(POLICY_DIR))
    return module


pack = load_pack()

PROD_TAGS = {"project": "model-serving", "stack": "prod", "managed-by": "pulumi", "environment": "prod"}


def policy_resource(type_: str, name: str, props: dict[str, Any], *, protect: bool = False,
                    property_dependencies: dict[str, list[PolicyResource]] | None = None) -> PolicyResource:
    options = PolicyResourceOptions(protect=protect, ignore_changes=[], delete_before_replace=None, aliases=[],
                                    custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])
    return PolicyResource(type_, props, f"urn:pulumi:prod::model-serving::{type_}::{name}", name, options,
                          None, None, [], property_dependencies or {})


# -- as_resource -------------------------------------------------------------------------------------------

def test_a_policy_resource_becomes_what_the_rules_read() -> None:
    props = {"imageTagMutability": "IMMUTABLE", "tags": PROD_TAGS}
    repository = policy_resource("aws:ecr/repository:Repository", "registry-model-server", props, protect=True)
    converted = pack.as_resource(repository, {})
    assert isinstance(converted, pack.Resource)
    assert (converted.type, converted.name, converted.props, converted.protect, converted.property_dependencies) == (
        "aws:ecr/repository:Repository", "registry-model-server", props, True, {})
    assert converted.props is not props  # the rules may not write into the engine's properties
    assert pack.as_resource(policy_resource("aws:kms/key:Key", "key", {}), {}).protect is False
    repository.opts = None  # type: ignore[assignment]  # as_resource reads a missing opts as unprotected
    assert pack.as_resource(repository, {}).protect is False


def test_a_shared_dependency_is_converted_once() -> None:
    subnet = policy_resource("aws:ec2/subnet:Subnet", "network-private-a", {"tags": PROD_TAGS}, protect=True)
    cpu = policy_resource("aws:eks/nodeGroup:NodeGroup", "pool-cpu-nodes", {}, property_dependencies={
        "subnetIds": [subnet], "clusterName": []})
    gpu = policy_resource("aws:eks/nodeGroup:NodeGroup", "pool-gpu-nodes", {}, property_dependencies={
        "subnetIds": [subnet]})
    seen: dict[str, Any] = {}
    converted_cpu, converted_gpu = pack.as_resource(cpu, seen), pack.as_resource(gpu, seen)
    (cpu_subnet,), (gpu_subnet,) = converted_cpu.property_dependencies["subnetIds"], \
        converted_gpu.property_dependencies["subnetIds"]
    assert cpu_subnet is gpu_subnet is seen[subnet.urn] is pack.as_resource(subnet, seen)
    assert (cpu_subnet.name, cpu_subnet.props, cpu_subnet.protect) == ("network-private-a", {"tags": PROD_TAGS}, True)
    assert converted_cpu.property_dependencies["clusterName"] == []
    assert set(seen) == {cpu.urn, gpu.urn, subnet.urn}


def test_a_dependency_cycle_ends_at_the_resource_already_seen() -> None:
    first = policy_resource("aws:iam/role:Role", "first", {})
    second = policy_resource("aws:iam/role:Role", "second", {}, property_dependencies={"assumeRolePolicy": [first]})
    first.property_dependencies = {"inlinePolicies": [second], "self": [first]}
    converted = pack.as_resource(first, {})
    (converted_second,) = converted.property_dependencies["inlinePolicies"]
    assert converted_second.name == "second"
    assert converted_second.property_dependencies["assumeRolePolicy"] == [converted]
    assert converted_second.property_dependencies["assumeRolePolicy"][0] is converted
    assert converted.property_dependencies["self"][0] is converted


def test_no_property_dependencies_is_none() -> None:
    resource = policy_resource("aws:ec2/vpc:Vpc", "network", {"tags": PROD_TAGS})
    resource.property_dependencies = None  # type: ignore[assignment]
    assert pack.as_resource(resource, {}).property_dependencies == {}


# -- the stack policies -------------------------------------------------------------------------------------

def crafted_stack() -> list[PolicyResource]:
    """Four violations on three resources; two node groups share one public subnet."""
    public = policy_resource("aws:ec2/subnet:Subnet", "network-public-a", {
        "tags": {**PROD_TAGS, "kubernetes.io/role/elb": "1"}, "mapPublicIpOnLaunch": True})
    return [
        policy_resource("aws:ecr/repository:Repository", "registry-model-server",
                        {"imageTagMutability": "MUTABLE", "tags": PROD_TAGS}, protect=True),
        policy_resource("aws:kms/key:Key", "storage-key", {"tags": PROD_TAGS}),
        policy_resource("aws:kms/key:Key", "protected-key", {"tags": PROD_TAGS}, protect=True),
        public,
        policy_resource("aws:eks/nodeGroup:NodeGroup", "pool-cpu-nodes", {
            "launchTemplate": {"id": "lt-1"}, "tags": {"project": "model-serving", "stack": "prod"}},
            property_dependencies={"subnetIds": [public]}),
        policy_resource("aws:eks/nodeGroup:NodeGroup", "pool-gpu-nodes", {
            "launchTemplate": {"id": "lt-2"}, "tags": PROD_TAGS}, property_dependencies={"subnetIds": [public]}),
    ]


def urn(resources: list[PolicyResource], name: str) -> str:
    return next(resource.urn for resource in resources if resource.name == name)


def expected_reports(resources: list[PolicyResource]) -> dict[str, list[tuple[str, str]]]:
    public = "nodes must run in private subnets only; network-public-a is public"
    return {**{each.name: [] for each in pack.RULES},
            "ecr-immutable-tags": [("image tags must be immutable (imageTagMutability: IMMUTABLE)",
                                    urn(resources, "registry-model-server"))],
            "stateful-protected-in-prod": [("stateful resources must be protected in prod (protect=True)",
                                            urn(resources, "storage-key"))],
            "nodes-private-imdsv2": [(public, urn(resources, "pool-cpu-nodes")),
                                     (public, urn(resources, "pool-gpu-nodes"))],
            "required-tags": [("missing tags: managed-by", urn(resources, "pool-cpu-nodes"))]}


def test_each_policy_reports_its_rules_violations_against_the_resource_at_fault() -> None:
    resources = crafted_stack()
    reported: dict[str, list[tuple[str, str]]] = {}
    for policy in pack.policies():
        reports = reported.setdefault(policy.name, [])
        policy.validate(StackValidationArgs(resources), lambda message, urn=None, into=reports: into.append(
            (message, urn)))
    assert reported == expected_reports(resources)


def test_there_is_one_mandatory_policy_per_rule() -> None:
    policies = pack.policies()
    assert [(p.name, p.description) for p in policies] == [(r.name, r.description) for r in pack.RULES]
    assert {p.enforcement_level for p in policies} == {EnforcementLevel.MANDATORY}


# -- the pack as the engine runs it -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack started as pulumi-analyzer-policy-python starts it (cwd policy/, `python -m pulumi.policy
    ENGINE .`), reached over the analyzer gRPC protocol the engine speaks."""
    server = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=POLICY_DIR,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stderr is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        port = server.stdout.readline().decode().strip() if ready else ""
        if not port.isdigit():
            server.kill()
            pytest.fail(f"the pack did not start: {port!r}\n{server.stderr.read().decode()}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        server.kill()
        server.wait()


def test_the_engine_sees_every_rule_as_a_mandatory_policy(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "model-serving"
    assert [(p.name, p.description, p.enforcementLevel) for p in info.policies] == [
        (r.name, r.description, proto.MANDATORY) for r in pack.RULES]


def analyzer_resource(resource: PolicyResource) -> proto.AnalyzerResource:
    properties = struct_pb2.Struct()
    properties.update(resource.props)
    return proto.AnalyzerResource(
        type=resource.resource_type, name=resource.name, urn=resource.urn, properties=properties,
        options=proto.AnalyzerResourceOptions(protect=resource.opts.protect),
        propertyDependencies={key: proto.AnalyzerPropertyDependencies(urns=[dep.urn for dep in deps])
                              for key, deps in resource.property_dependencies.items()})


def test_the_engine_gets_the_same_reports_as_the_policies_give(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    resources = crafted_stack()
    response = served_pack.AnalyzeStack(
        proto.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in resources]), timeout=30)
    reported: dict[str, list[tuple[str, str]]] = {each.name: [] for each in pack.RULES}
    for diagnostic in response.diagnostics:
        description, _, message = diagnostic.message.partition("\n")
        assert (description, diagnostic.enforcementLevel) == (diagnostic.description, proto.MANDATORY)
        reported[diagnostic.policyName].append((message, diagnostic.urn))
    assert reported == expected_reports(resources)


def test_values_not_known_in_a_preview_are_left_out_never_guessed() -> None:
    """In a preview the engine hands unknown values as sentinels its proxies raise on: the adapter
    reads the rest of the map and leaves them out (a list keeps their place as None)."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy({"encryptionConfig": {"resources": ["secrets"],
                                                         "provider": {"keyArn": UNKNOWN_STRING_VALUE}},
                                    "subnetIds": ["subnet-1", UNKNOWN_STRING_VALUE], "name": UNKNOWN_STRING_VALUE})
    assert pack.plain(props) == {"encryptionConfig": {"resources": ["secrets"], "provider": {}},
                                 "subnetIds": ["subnet-1", None]}
    cluster = policy_resource("aws:eks/cluster:Cluster", "cluster", props)
    assert pack.RULES and all(not rule.violations(pack.as_resource(cluster, {}))
                              for rule in pack.RULES if rule.name == "eks-secrets-encryption")
