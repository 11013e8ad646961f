"""Every config rule: a bad value fails with one message naming the key and how to fix it.

One file, past 400 lines, on purpose: it is one table of every problem the settings report, word
for word, so a reader checks the whole operator-facing vocabulary in one place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from infra.settings import PROJECT_DIR, StackConfigError, load_settings, settings_from_runtime
from review.stack_files import stack_config

GOOD_POOLS = {
    "cpu": {"instanceTypes": ["m7i.large"], "minSize": 2, "maxSize": 4},
    "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "minSize": 0, "maxSize": 2},
}


def load(stack: str = "dev", **overrides: Any):
    raw, _ = stack_config(stack, with_provisioner(overrides))
    return load_settings(raw, project="model-serving", stack=stack)


def with_provisioner(overrides: dict[str, Any]) -> dict[str, Any]:
    """Pools given with sizes are managed node groups: unless a test names the provisioner, they are
    read with nodeProvisioner cluster-autoscaler (and the stack file's systemPool dropped)."""
    sized = any(isinstance(pool, dict) and {"minSize", "maxSize"} & set(pool)
                for pool in (overrides.get("nodePools") or {}).values())
    if sized and "nodeProvisioner" not in overrides:
        return {"nodeProvisioner": "cluster-autoscaler", "systemPool": {}, **overrides}
    return overrides


def problems(stack: str = "dev", **overrides: Any) -> dict[str, str]:
    """path → 'message / fix' for each problem reported."""
    with pytest.raises(StackConfigError) as caught:
        load(stack, **overrides)
    return {p.path: f"{p.message} / {p.fix}" for p in caught.value.problems}


def pools(**changes: dict[str, Any]) -> dict[str, Any]:
    merged = {name: dict(pool) for name, pool in GOOD_POOLS.items()}
    for name, change in changes.items():
        merged[name] = {**merged.get(name, {}), **change}
    return merged


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_committed_stacks_are_valid(stack: str) -> None:
    settings = load(stack)
    assert settings.environment == stack
    assert settings.name == f"model-serving-{stack}"


def test_unknown_top_level_key_is_named_with_a_suggestion() -> None:
    found = problems(natGatways="single")
    assert "natGatways" in found
    assert "did you mean 'natGateways'" in found["natGatways"]


def test_unknown_key_inside_a_pool_is_named_with_a_suggestion() -> None:
    found = problems(nodePools=pools(gpu={"maxSise": 3}))
    assert "did you mean 'maxSize'" in found["nodePools.gpu.maxSise"]


def test_min_size_above_max_size() -> None:
    found = problems(nodePools=pools(gpu={"minSize": 3, "maxSize": 1}))
    assert found["nodePools.gpu.maxSize"].startswith("1 is less than minSize 3")


@pytest.mark.parametrize("desired", [0, 5])
def test_desired_size_outside_bounds(desired: int) -> None:
    found = problems(nodePools=pools(cpu={"minSize": 1, "maxSize": 4, "desiredSize": desired}))
    assert "outside [minSize 1, maxSize 4]" in found["nodePools.cpu.desiredSize"]


@pytest.mark.parametrize("bad_name", ["GPU", "gpu_large", "1gpu", "a" * 25, "gpu-"])
def test_invalid_pool_name(bad_name: str) -> None:
    found = problems(nodePools=pools(**{bad_name: GOOD_POOLS["gpu"]}))
    assert f"pool name '{bad_name}'" in found[f"nodePools.{bad_name}"]


def test_duplicate_pool_name_in_stack_file_is_rejected(tmp_path) -> None:
    import shutil

    import yaml

    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.dup.yaml").write_text(
        "config:\n  model-serving:nodePools:\n"
        "    gpu: {instanceTypes: [g5.xlarge], gpu: true, minSize: 0, maxSize: 1}\n"
        "    gpu: {instanceTypes: [g6.xlarge], gpu: true, minSize: 0, maxSize: 1}\n")
    with pytest.raises(yaml.YAMLError, match="key 'gpu' is given twice"):
        stack_config("dup", project_dir=tmp_path)


def test_duplicate_pool_name_in_runtime_json_is_rejected() -> None:
    raw, _ = stack_config("dev")
    raw["model-serving:nodePools"] = '{"cpu": {"instanceTypes": ["m7i.large"], "minSize": 2, "maxSize": 3},' \
                                     ' "cpu": {"instanceTypes": ["m7i.large"], "minSize": 1, "maxSize": 3}}'
    with pytest.raises(StackConfigError, match="nodePools: is not valid structured config: duplicate key 'cpu'"):
        load_settings(raw, project="model-serving", stack="dev")


def test_gpu_pool_with_cpu_instance_types() -> None:
    found = problems(nodePools=pools(gpu={"instanceTypes": ["m7i.large"]}))
    assert "gpu is true but m7i.large has no NVIDIA GPU" in found["nodePools.gpu.instanceTypes"]


def test_cpu_pool_with_gpu_instance_types() -> None:
    found = problems(nodePools=pools(cpu={"instanceTypes": ["g5.xlarge"]}))
    assert "carries an NVIDIA GPU but gpu is false" in found["nodePools.cpu.instanceTypes"]


def test_graviton_types_are_rejected_for_x86_amis() -> None:
    found = problems(nodePools=pools(cpu={"instanceTypes": ["m7g.large"]}))
    assert "Arm (Graviton)" in found["nodePools.cpu.instanceTypes[0]"]


def test_no_cpu_pool_for_system_pods() -> None:
    found = problems(nodePools={"gpu": GOOD_POOLS["gpu"]})
    assert "no CPU pool" in found["nodePools"]


def test_cpu_pool_that_can_reach_zero_does_not_count_for_system_pods() -> None:
    found = problems(nodePools=pools(cpu={"minSize": 0}))
    assert "minSize >= 1" in found["nodePools"]


def test_vpc_cidr_too_small_for_the_subnets() -> None:
    found = problems(vpcCidr="10.0.0.0/24", azCount=3)
    assert "too small for 3 zone(s)" in found["vpcCidr"]
    assert "/21 or larger" in found["vpcCidr"]


def test_vpc_cidr_must_be_private_and_well_formed() -> None:
    assert "not a private" in problems(vpcCidr="8.8.0.0/16")["vpcCidr"]
    assert "not an IPv4 CIDR" in problems(vpcCidr="10.0.0.1/16")["vpcCidr"]


def test_fewer_than_two_zones_by_count() -> None:
    assert "at least 2" in problems(azCount=1)["azCount"]


def test_fewer_than_two_zones_by_name() -> None:
    assert "at least 2" in problems(availabilityZones=["us-east-1a"])["availabilityZones"]


def test_zone_of_another_region() -> None:
    found = problems(availabilityZones=["us-east-1a", "eu-west-1b"])
    assert "not a zone of region us-east-1" in found["availabilityZones[1]"]


def test_unsupported_kubernetes_version_lists_the_supported_ones() -> None:
    found = problems(kubernetesVersion="1.29")
    assert "'1.29' is not supported; choose one of 1.35" in found["kubernetesVersion"]


@pytest.mark.parametrize("region", ["us_east_1", "useast1", "US-EAST-1", "us-east"])
def test_malformed_region(region: str) -> None:
    assert "is not an AWS region name" in problems(region=region)["region"]


def test_public_api_open_to_the_world_is_rejected_in_prod() -> None:
    found = problems("prod", endpointPublicAccessCidrs=["203.0.113.0/24", "0.0.0.0/0"])
    assert "whole internet" in found["endpointPublicAccessCidrs[1]"]


def test_public_api_open_to_the_world_is_allowed_in_dev() -> None:
    assert load("dev", endpointPublicAccessCidrs=["0.0.0.0/0"]).endpoint_public_access_cidrs == ["0.0.0.0/0"]


def test_admin_principal_must_be_a_role_or_user_arn() -> None:
    found = problems(adminPrincipalArns=["arn:aws:sts::123456789012:assumed-role/admin/me"])
    assert "not an IAM role or user ARN" in found["adminPrincipalArns[0]"]


def test_log_retention_must_be_a_cloudwatch_period() -> None:
    assert "not a CloudWatch Logs retention period" in problems(controlPlaneLogRetentionDays=10)[
        "controlPlaneLogRetentionDays"]


def test_required_key_without_default_is_reported() -> None:
    assert "is required" in problems(environment=None)["environment"]


def test_all_problems_are_reported_together_in_one_message() -> None:
    with pytest.raises(StackConfigError) as caught:
        load("prod", region="nowhere", natGatways="x", azCount=1, kubernetesVersion="1.20",
             endpointPublicAccessCidrs=["0.0.0.0/0"], nodePools=pools(gpu={"minSize": 5, "maxSize": 1}))
    message = str(caught.value)
    assert message.startswith("Invalid stack config for 'prod' (6 problems):")
    for path in ("region", "natGatways", "azCount", "kubernetesVersion", "endpointPublicAccessCidrs[0]",
                 "nodePools.gpu.maxSize"):
        assert f"\n  {path}: " in message
    assert message.count("      fix: ") == 6


def test_fix_lines_are_runnable_pulumi_commands() -> None:
    found = problems(azCount=1)
    assert found["azCount"].endswith("/ pulumi config set azCount 2")


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValidationError, match="frozen"):
        settings.region = "eu-west-1"  # type: ignore[misc]


def test_runtime_reads_config_the_way_the_language_host_passes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw, _ = stack_config("staging")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(raw))
    runtime_config.set_all_config({})
    monkeypatch.setattr(pulumi, "get_project", lambda: "model-serving")
    monkeypatch.setattr(pulumi, "get_stack", lambda: "staging")
    settings = settings_from_runtime()
    assert (settings.project, settings.stack, settings.region) == ("model-serving", "staging", "us-west-2")
    assert settings.node_pools["gpu"].gpu is True


# -- the model service -------------------------------------------------------------------------------

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"


def service(**fields: Any) -> dict[str, Any]:
    return {"modelService": {"replicas": 2, "minReplicas": 2, "maxReplicas": 4, **fields}}


def test_min_replicas_above_max() -> None:
    found = problems(**service(replicas=3, minReplicas=5, maxReplicas=3))
    assert found["modelService.minReplicas"].startswith("5 is above maxReplicas 3")


def test_replicas_outside_the_autoscaler_bounds() -> None:
    assert "outside [minReplicas 2, maxReplicas 4]" in problems(**service(replicas=9))["modelService.replicas"]


def test_gpu_model_on_a_stack_without_a_gpu_pool() -> None:
    found = problems(nodePools={"cpu": GOOD_POOLS["cpu"]}, **service(gpus=1))
    assert "pool 'cpu' has no GPUs" in found["modelService.gpus"]
    assert "this stack has no GPU pool" in found["modelService.gpus"]


def test_gpu_model_on_a_cpu_pool_points_at_the_gpu_pool() -> None:
    assert "use one of the GPU pools: gpu" in problems(**service(gpus=1))["modelService.gpus"]


def test_cpu_model_on_a_gpu_pool() -> None:
    assert "0 GPUs requested on GPU pool 'gpu'" in problems(**service(pool="gpu"))["modelService.gpus"]


@pytest.mark.parametrize(("field", "value", "request_field"), [
    ("cpuLimit", "500m", "cpuRequest"), ("memoryLimit", "256Mi", "memoryRequest")])
def test_limits_below_requests(field: str, value: str, request_field: str) -> None:
    found = problems(**service(**{field: value, request_field: {"cpuRequest": "1", "memoryRequest": "1Gi"}[
        request_field]}))
    assert f"is below {request_field}" in found[f"modelService.{field}"]


def test_malformed_quantities() -> None:
    found = problems(**service(cpuRequest="lots", memoryLimit="1GB"))
    assert "not a CPU quantity" in found["modelService.cpuRequest"]
    assert "not a memory quantity" in found["modelService.memoryLimit"]


def test_unknown_pool_name_lists_the_pools() -> None:
    assert "'gpus' is not a node pool; pools: cpu, gpu" in problems(**service(pool="gpus"))["modelService.pool"]


@pytest.mark.parametrize("arn", ["arn:aws:iam::123456789012:server-certificate/x", "my-cert", CERTIFICATE[:-1]])
def test_certificate_must_be_an_acm_arn(arn: str) -> None:
    assert "is not an ACM certificate ARN" in problems(**service(certificateArn=arn))["modelService.certificateArn"]


def test_certificate_must_be_in_the_stacks_region() -> None:
    found = problems("prod", **service(replicas=3, minReplicas=3, certificateArn=CERTIFICATE))
    assert "the certificate is in us-east-1, but a load balancer in eu-west-1" in found[
        "modelService.certificateArn"]


def test_valid_certificate_is_accepted() -> None:
    assert load(**service(certificateArn=CERTIFICATE)).model_service.certificate_arn == CERTIFICATE


def test_workers_follow_the_cpu_limit() -> None:
    assert load(**service(cpuRequest="2", cpuLimit="3500m")).model_service.workers == 3
    assert load(**service(cpuRequest="250m", cpuLimit="500m")).model_service.workers == 1
    assert load(**service(cpuRequest="1", cpuLimit="2000m")).model_service.workers == 2


# -- instance types ------------------------------------------------------------------------------------

def test_unknown_instance_type_is_refused_with_a_suggestion() -> None:
    found = problems(nodePools=pools(cpu={"instanceTypes": ["m7i.large", "m7i.lagre"]}))
    assert found["nodePools.cpu.instanceTypes[1]"] == (
        "'m7i.lagre' is not an EC2 instance type; did you mean 'm7i.large'? / use 'm7i.large'")


def test_instance_type_nothing_resembles_is_refused_without_a_guess() -> None:
    found = problems(nodePools=pools(cpu={"instanceTypes": ["banana"]}))
    assert found["nodePools.cpu.instanceTypes[0]"].startswith("'banana' is not an EC2 instance type / ")


@pytest.mark.parametrize(("instance_type", "accelerator"), [
    ("p5en.48xlarge", "nvidia-h200"), ("p6-b200.48xlarge", "nvidia-b200"), ("g6f.large", "nvidia-l4"),
    ("g6e.xlarge", "nvidia-l40s"), ("g7e.2xlarge", "nvidia-rtx-pro-6000")])
def test_current_nvidia_families_make_gpu_pools(instance_type: str, accelerator: str) -> None:
    settings = load(nodePools=pools(gpu={"instanceTypes": [instance_type]}))
    assert settings.node_pools["gpu"].accelerator == accelerator


@pytest.mark.parametrize("instance_type", ["g4ad.xlarge", "p6e-gb200.36xlarge", "g5g.xlarge"])
def test_gpu_types_the_nvidia_x86_ami_cannot_drive_are_refused(instance_type: str) -> None:
    found = problems(nodePools=pools(gpu={"instanceTypes": [instance_type]}))
    assert any(path.startswith("nodePools.gpu.instanceTypes") for path in found)


# -- cross-checks declare what they read ----------------------------------------------------------------

def test_a_cross_check_naming_an_unknown_setting_fails_at_import() -> None:
    from infra.settings.checks import cross_check

    with pytest.raises(TypeError, match="'regoin'"):
        cross_check("regoin")


def test_a_cross_check_reading_an_undeclared_setting_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.settings import checks

    def reads_more_than_it_declares(settings: Any) -> Any:
        if settings.environment == "prod":
            yield "unreachable"

    monkeypatch.setattr(checks, "CROSS_CHECKS", [checks.CrossCheck(frozenset({"region"}), reads_more_than_it_declares)])
    monkeypatch.setattr("infra.settings.loading.CROSS_CHECKS", checks.CROSS_CHECKS)
    with pytest.raises(AttributeError, match="environment"):
        load()


def test_a_malformed_value_is_reported_once_and_the_keys_after_it_still_decode() -> None:
    raw, _ = stack_config("dev")
    raw["model-serving:nodePools"] = '{"cpu": {'
    raw["model-serving:modelService"] = '{"replicas": 1, "minReplicas": 3, "maxReplicas": 2}'
    with pytest.raises(StackConfigError) as caught:
        load_settings(raw, project="model-serving", stack="dev")
    found = {p.path: p for p in caught.value.problems}
    assert found["nodePools"].message.startswith("is not valid structured config")
    assert found["nodePools"].fix == "set it again with pulumi config set --path 'nodePools...'"
    assert "modelService.minReplicas" in found  # decoded and checked despite the broken key before it


def test_a_cpu_pool_of_one_node_can_carry_the_system_pods() -> None:
    settings = load(nodePools=pools(cpu={"minSize": 1, "maxSize": 1}))
    assert settings.system_pool == "cpu"


@pytest.mark.parametrize(("pool", "service"), [
    ({"minSize": 3, "maxSize": 3, "desiredSize": 3}, {}),
    ({}, {"replicas": 4, "minReplicas": 4, "maxReplicas": 4}),
    ({}, {"cpuRequest": "1", "cpuLimit": "1", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}),
])
def test_bounds_that_meet_are_accepted(pool: dict[str, Any], service: dict[str, Any]) -> None:
    settings = load(nodePools=pools(cpu=pool), **service_with(service))
    assert settings.node_pools["cpu"].min_size <= settings.node_pools["cpu"].max_size


def service_with(fields: dict[str, Any]) -> dict[str, Any]:
    return {"modelService": {"replicas": 2, "minReplicas": 2, "maxReplicas": 4, **fields}} if fields else {}


def test_exactly_two_listed_zones_are_enough() -> None:
    assert load(availabilityZones=["us-east-1a", "us-east-1b"]).zone_count == 2


# -- what an operator reads: each problem's exact message and fix, for every kind of problem ------

PROD_SIZES = {"replicas": 3, "minReplicas": 3, "maxReplicas": 12}
ZONE_ID = "Z0123456789ABCDEFGHIJ"


@pytest.mark.parametrize(("stack", "overrides", "expected"), [
    # keys the project does not declare, with and without a likely meaning; each one reported
    ("dev", {"natGatways": "single"}, {
        "natGatways": "is not a config key of this project (Pulumi.yaml declares them all) / "
                      "did you mean 'natGateways'? remove it: pulumi config rm natGatways"}),
    ("dev", {"zzzqqq": 1, "yyyxxx": 2}, {
        key: f"is not a config key of this project (Pulumi.yaml declares them all) / remove it: pulumi config rm {key}"
        for key in ("zzzqqq", "yyyxxx")}),
    # settings a model does not have, and settings a model needs
    ("dev", {"nodePools": pools(gpu={"maxSise": 3, "qqqq": 1})}, {
        "nodePools.gpu.maxSise": "is not a known setting here / did you mean 'maxSize'? remove it: "
                                 "pulumi config rm --path 'nodePools.gpu.maxSise'",
        "nodePools.gpu.qqqq": "is not a known setting here / remove it: pulumi config rm --path 'nodePools.gpu.qqqq'"}),
    ("dev", {"nodePools": {"cpu": {"instanceTypes": ["m7i.large"], "minSize": 2}}},
     {"nodePools.cpu.maxSize": "is required for a managed node group / pulumi config set --path "
                                "'nodePools.cpu.maxSize' <value>"}),
    ("dev", {"environment": None}, {
        "environment": "is required (declared in Pulumi.yaml without a default) / "
                       "pulumi config set environment <value>"}),
    # pydantic's own checks, with what was given and a --path only where the key needs one
    ("dev", {"azCount": 0},
     {"azCount": "Input should be greater than or equal to 1 (got '0') / pulumi config set azCount <valid value>"}),
    ("dev", {"availabilityZones": [5, "us-east-1a"]}, {
        "availabilityZones[0]": "Input should be a valid string (got 5) / "
                                "pulumi config set --path 'availabilityZones[0]' <valid value>"}),
    ("dev", {"modelService": {"scheme": "public"}}, {
        "modelService.scheme": "Input should be 'internet-facing' or 'internal' (got 'public') / "
                               "pulumi config set --path 'modelService.scheme' <valid value>"}),
    ("dev", {"modelService": {"waf": {"enabled": True, "requestsPerFiveMinutes": 5}}}, {
        "modelService.waf.requestsPerFiveMinutes":
            "Input should be greater than or equal to 10 (got 5) / "
            "pulumi config set --path 'modelService.waf.requestsPerFiveMinutes' <valid value>"}),
    # the network
    ("dev", {"vpcCidr": "10.0.0.0/29"}, {"vpcCidr": "a VPC CIDR must be between /16 and /28, got /29 / "
                                                    "use a block such as 10.0.0.0/16"}),
    ("dev", {"vpcCidr": "10.0.0.0/15"}, {"vpcCidr": "a VPC CIDR must be between /16 and /28, got /15 / "
                                                    "use a block such as 10.0.0.0/16"}),
    ("dev", {"vpcCidr": "8.8.0.0/16"}, {"vpcCidr": "'8.8.0.0/16' is not a private (RFC 1918) range / "
                                                   "use a block inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"}),
    ("dev", {"modelService": {"allowedCidrs": ["10.0.0.1/24", "10.0.0.0/33"]}}, {
        "modelService.allowedCidrs[0]": "'10.0.0.1/24' is not an IPv4 CIDR block (10.0.0.1/24 has host bits set) / "
                                        "write it like 203.0.113.0/24",
        "modelService.allowedCidrs[1]": "'10.0.0.0/33' is not an IPv4 CIDR block ('33' is not a valid netmask) / "
                                        "write it like 203.0.113.0/24"}),
    # CIDR notation only: a bare address or a netmask is refused (the ALB controller's Go parser takes neither)
    ("dev", {"modelService": {"allowedCidrs": ["198.51.100.7", "10.0.0.0/255.0.0.0", "10.0.0.0/08"]}}, {
        f"modelService.allowedCidrs[{index}]": f"'{given}' is not in CIDR notation (address/prefix length), the only "
                                               "form the AWS Load Balancer Controller (Go's net.ParseCIDR) accepts / "
                                               f"write it as {fixed}"
        for index, (given, fixed) in enumerate((("198.51.100.7", "198.51.100.7/32"),
                                                ("10.0.0.0/255.0.0.0", "10.0.0.0/8"), ("10.0.0.0/08", "10.0.0.0/8")))}),
    ("staging", {"endpointPublicAccessCidrs": ["203.0.113.7"]}, {
        "endpointPublicAccessCidrs[0]": "'203.0.113.7' is not in CIDR notation (address/prefix length), the only form "
                                        "AWS accepts / write it as 203.0.113.7/32"}),
    # gp3's own cap (65,536 GiB since 2025), not gp2's 16,384
    ("dev", {"observability": {"prometheusStorageGib": 65537}}, {
        "observability.prometheusStorageGib": "Input should be less than or equal to 65536 (got 65537) / "
                                              "pulumi config set --path 'observability.prometheusStorageGib' "
                                              "<valid value>"}),
    # objectives an alert can reach, and a batch window inside its own objective
    ("dev", {"observability": {"latencySloMs": 5000, "queueWaitSloMs": 60000}}, {
        f"observability.{key}": f"{value} ms can never be seen as broken: the server's histogram tops out at 5000 ms, "
                                "and a p99 computed from it never exceeds that / set it below 5000, e.g. "
                                f"pulumi config set --path 'observability.{key}' 2500"
        for key, value in (("latencySloMs", 5000), ("queueWaitSloMs", 60000))}),
    ("dev", {"modelService": {"maxBatchWaitMs": 50}}, {
        "modelService.maxBatchWaitMs": "50 ms is not below observability.queueWaitSloMs (50 ms): with little traffic "
                                       "every request waits the whole window, and the queue-wait alert would fire / "
                                       "lower it below 50, or raise observability.queueWaitSloMs above 50"}),
    # an address listed twice (as SNS compares them, whatever the case)
    ("dev", {"observability": {"alertEmails": ["oncall@example.com", "ops@example.com", "OnCall@example.com"]}}, {
        "observability.alertEmails[2]": "OnCall@example.com is listed already, as alertEmails[0] / "
                                        "pulumi config rm --path 'observability.alertEmails[2]'"}),
    # the name the program requests a certificate for fits ACM's common name
    ("dev", {"modelService": {"domain": f"{'a' * 53}.example.com", "hostedZoneName": "example.com"}}, {
        "modelService.domain": f"{'a' * 53}.example.com is 65 characters, and the certificate the program requests "
                               "for it takes a name of at most 64 (ACM's limit on a certificate's common name) / use a "
                               "name of at most 64 characters, or bring a certificate of your own with --path "
                               "'modelService.certificateArn'"}),
    # the cluster and its nodes
    ("dev", {"kubernetesVersion": "1.29"}, {"kubernetesVersion": "'1.29' is not supported; choose one of 1.35, 1.36 / "
                                                                 "pulumi config set kubernetesVersion 1.36"}),
    ("dev", {"nodePools": pools(cpu={"instanceTypes": ["qq.nothing"]})}, {
        "nodePools.cpu.instanceTypes[0]": "'qq.nothing' is not an EC2 instance type / "
                                          "use a type such as m7i.large (aws ec2 describe-instance-types)"}),
    ("dev", {"nodePools": pools(cpu={"instanceTypes": ["m7g.large"]})}, {
        "nodePools.cpu.instanceTypes[0]": "'m7g.large' is an Arm (Graviton) type, but node pools run x86_64 AL2023 "
                                          "AMIs / use an x86_64 type such as m7i.large or g5.xlarge"}),
    ("dev", {"observability": {"logRetentionDays": 31}}, {
        "observability.logRetentionDays": "31 is not a CloudWatch Logs retention period; choose one of 1, 3, 5, 7, 14, "
                                          "30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, "
                                          "2922, 3288, 3653 / use the nearest allowed period, e.g. 90"}),
    # the model's resources
    ("dev", {"modelService": {"cpuRequest": "abc", "memoryRequest": "0"}}, {
        "modelService.cpuRequest": "'abc' is not a CPU quantity / write cores like 500m, 1 or 1.5",
        "modelService.memoryRequest": "'0' is not a memory quantity / write bytes like 512Mi or 2Gi"}),
    ("dev", {"modelService": {"cpuRequest": "0", "memoryRequest": "12XB"}}, {
        "modelService.cpuRequest": "'0' is not a CPU quantity / write cores like 500m, 1 or 1.5",
        "modelService.memoryRequest": "'12XB' is not a memory quantity / write bytes like 512Mi or 2Gi"}),
    # the front door: HTTPS at a name, in a zone that holds it
    ("prod", {"modelService": PROD_SIZES}, {
        "modelService": "prod would serve the model over plain HTTP to the internet / pulumi config set --path "
                        "'modelService.domain' <name> with --path 'modelService.hostedZoneName' <zone> (or set "
                        "certificateArn), or --path 'modelService.scheme' internal"}),
    ("dev", {"modelService": {"domain": "iris.example.com"}}, {
        "modelService.domain": "domain iris.example.com needs the Route 53 hosted zone that holds it / pulumi config "
                               "set --path 'modelService.hostedZoneId' <Z...>, or --path 'modelService.hostedZoneName' "
                               "<zone name>"}),
    ("dev", {"modelService": {"domain": "iris.notexample.com", "hostedZoneName": "example.com"}}, {
        "modelService.domain": "domain iris.notexample.com is not in hosted zone example.com / use a name ending in "
                               ".example.com, or the zone that holds iris.notexample.com"}),
    *[("dev", {"modelService": {key: zone}}, {
        f"modelService.{key}": "a hosted zone without a domain has nothing to serve / "
                               "pulumi config set --path 'modelService.domain' <name in that zone>"})
      for key, zone in (("hostedZoneName", "example.com"), ("hostedZoneId", ZONE_ID))],
    ("dev", {"modelService": {"domain": "iris.example.com", "hostedZoneName": "example.com", "hostedZoneId": ZONE_ID}},
     {"modelService.hostedZoneName": "give the hosted zone once: by ID or by name, not both / "
                                     "pulumi config rm --path 'modelService.hostedZoneName'"}),
    ("dev", {"modelService": {"domain": "https://iris.example.com"}}, {
        "modelService.domain": "'https://iris.example.com' is not a DNS name / write it like iris.ml.example.com "
                               "(lowercase, no scheme or path)"}),
    ("dev", {"modelService": {"domain": "iris.example.com", "hostedZoneId": "zone-1"}}, {
        "modelService.hostedZoneId": "'zone-1' is not a Route 53 hosted zone ID / use the zone's ID, e.g. "
                                     "Z0123456789ABCDEFGHIJ (aws route53 list-hosted-zones)"}),
])
def test_each_problem_reads_exactly(stack: str, overrides: dict[str, Any], expected: dict[str, str]) -> None:
    assert problems(stack, **overrides) == expected


@pytest.mark.parametrize(("model", "accepted"), [
    ({"domain": "example.com", "hostedZoneName": "example.com"}, "the zone's apex"),
    ({"domain": "iris.ml.example.com", "hostedZoneName": "example.com"}, "a name deeper in the zone"),
    ({"domain": "iris.example.com", "hostedZoneId": ZONE_ID}, "any name, when the zone is given by ID"),
])
def test_names_a_hosted_zone_holds_are_accepted(model: dict[str, Any], accepted: str) -> None:
    assert load(modelService=model).model_service.domain == model["domain"], accepted


@pytest.mark.parametrize(("overrides", "accepted"), [
    ({"modelService": {"domain": f"{'a' * 52}.example.com", "hostedZoneName": "example.com"}},
     "a 64-character name, the longest a certificate's common name may be"),
    ({"modelService": {"domain": f"{'a' * 60}.example.com", "hostedZoneName": "example.com",
                       "certificateArn": CERTIFICATE}}, "a longer name, with a certificate of the operator's own"),
    ({"modelService": {"maxBatchWaitMs": 49}}, "a batch window just inside the queue-wait objective"),
    ({"modelService": {"maxBatchWaitMs": 80, "canary": {"enabled": False}}, "observability": {"enabled": False}},
     "any window when there are no alerts"),
    ({"observability": {"latencySloMs": 4999, "queueWaitSloMs": 4999}}, "objectives just under the histogram's top"),
    ({"nodePools": pools(cpu={"diskSizeGib": 65536}), "observability": {"prometheusStorageGib": 65536}},
     "gp3 volumes of 64 TiB"),
    ({"observability": {"alertEmails": ["on.call@example.com", "on-call@example.com"]}},
     "two addresses that differ only in punctuation"),
])
def test_the_edges_of_what_aws_and_the_alerts_accept(overrides: dict[str, Any], accepted: str) -> None:
    assert load(**overrides).environment == "dev", accepted


def test_a_vpc_of_the_smallest_size_aws_allows_is_refused_for_its_subnets_not_its_size() -> None:
    assert problems(vpcCidr="10.0.0.0/28") == {
        "vpcCidr": "10.0.0.0/28 is too small for 2 zone(s): each of its 4 subnets would be /30, and pods need at "
                   "least /24 / use a /22 or larger, e.g. pulumi config set vpcCidr 10.0.0.0/16"}


@pytest.mark.parametrize(("count", "header"), [(1, "(1 problem):"), (2, "(2 problems):")])
def test_the_report_counts_its_problems(count: int, header: str) -> None:
    with pytest.raises(StackConfigError) as caught:
        load(**dict(list({"azCount": 0, "natGatways": "single"}.items())[:count]))
    assert str(caught.value).splitlines()[0] == f"Invalid stack config for 'dev' {header}"


def test_a_model_built_directly_still_says_what_is_wrong() -> None:
    """Code that builds a settings model itself (not through the loader) gets pydantic's error,
    which carries the problem's message."""
    from infra.settings.models import NodePoolSettings

    with pytest.raises(ValidationError, match="1 is less than minSize 3"):
        NodePoolSettings.model_validate({"instanceTypes": ["m7i.large"], "minSize": 3, "maxSize": 1})


# -- Karpenter pools and the system node group: each new key named, with its fix ----------------------

KARPENTER_POOLS = {"cpu": {"instanceFamilies": ["m7i"], "limits": {"cpu": 8}},
                   "gpu": {"instanceTypes": ["g5.xlarge"], "gpu": True, "limits": {"cpu": 4, "gpus": 1}}}


def karpenter_pools(**changes: dict[str, Any]) -> dict[str, Any]:
    merged = {name: dict(pool) for name, pool in KARPENTER_POOLS.items()}
    for name, change in changes.items():
        merged[name] = {**merged.get(name, {}), **change}
    return merged


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"nodeProvisioner": "karpentr"}, {
        "nodeProvisioner": "Input should be 'karpenter' or 'cluster-autoscaler' (got 'karpentr') / "
                           "pulumi config set nodeProvisioner <valid value>"}),
    ({"nodeProvisioner": "karpenter", "nodePools": karpenter_pools(cpu={"minSize": 2})}, {
        "nodePools.cpu.minSize": "is not read with nodeProvisioner karpenter (its pools take limits instead of "
                                 "sizes) / pulumi config rm --path 'nodePools.cpu.minSize'"}),
    ({"nodePools": {"cpu": {"instanceFamilies": ["m7i"]}}}, {
        "nodePools.cpu.limits": "is required: a Karpenter pool grows until it reaches its limits / "
                                "pulumi config set --path 'nodePools.cpu.limits.cpu' 16"}),
    ({"nodePools": {"cpu": {"limits": {"cpu": 8}}}}, {
        "nodePools.cpu": "needs instanceTypes, instanceFamilies or instanceCategories / "
                         "pulumi config set --path 'nodePools.cpu.instanceFamilies[0]' m7i"}),
    ({"nodePools": karpenter_pools(gpu={"limits": {"cpu": 4}})}, {
        "nodePools.gpu.limits.gpus": "is required on a GPU pool: its GPUs are what it costs / "
                                     "pulumi config set --path 'nodePools.gpu.limits.gpus' 2"}),
    ({"nodePools": karpenter_pools(cpu={"limits": {"cpu": 4, "gpus": 1}})}, {
        "nodePools.cpu.limits.gpus": "a CPU pool has no GPUs to limit / "
                                     "pulumi config rm --path 'nodePools.cpu.limits.gpus'"}),
    ({"nodePools": karpenter_pools(cpu={"limits": {"cpu": 8, "memory": "lots"}})}, {
        "nodePools.cpu.limits.memory": "'lots' is not a memory quantity / write bytes like 512Mi or 2Gi"}),
    ({"nodePools": karpenter_pools(cpu={"instanceTypes": ["m7i.large"]})}, {
        "nodePools.cpu.instanceFamilies": "give instanceTypes or instanceFamilies, not both / pulumi config rm "
                                          "--path 'nodePools.cpu.instanceTypes' (families let Karpenter pick the "
                                          "size)"}),
    ({"nodePools": karpenter_pools(cpu={"instanceFamilies": ["m7j"]})}, {
        "nodePools.cpu.instanceFamilies[0]": "'m7j' is not an EC2 instance family; did you mean 'm7i'? / use 'm7i'"}),
    ({"nodePools": karpenter_pools(cpu={"instanceFamilies": ["m7g"]})}, {
        "nodePools.cpu.instanceFamilies[0]": "'m7g' is an Arm (Graviton) family, but node pools run x86_64 AL2023 "
                                             "AMIs / use an x86_64 family such as m7i, c7i or g6"}),
    ({"nodePools": karpenter_pools(gpu={"instanceTypes": [], "instanceFamilies": ["g5", "g6"]})}, {
        "nodePools.gpu.instanceFamilies": "g5, g6 mix GPU models; one pool carries one accelerator label / "
                                          "split them into one pool per GPU model"}),
    ({"nodePools": karpenter_pools(cpu={"disruption": {"consolidateAfter": "5 minutes"}})}, {
        "nodePools.cpu.disruption.consolidateAfter": "'5 minutes' is not a duration Karpenter reads / "
                                                     "write it like 30s, 5m, 1h or 1h30m"}),
    ({"nodePools": karpenter_pools(cpu={"disruption": {"expireAfter": "0s"}})}, {
        "nodePools.cpu.disruption.expireAfter": "'0s' is not a duration Karpenter reads / "
                                                "write it like 30s, 5m, 1h or 1h30m"}),
    ({"nodePools": karpenter_pools(cpu={"disruption": {"terminationGracePeriod": "Never"}})}, {
        "nodePools.cpu.disruption.terminationGracePeriod": "'Never' is not a duration Karpenter reads / "
                                                           "write it like 30s, 5m, 1h or 1h30m"}),
    ({"nodePools": karpenter_pools(cpu={"disruption": {"budgetPercent": 0}})}, {
        "nodePools.cpu.disruption.budgetPercent": "Input should be greater than or equal to 1 (got 0) / "
                                                  "pulumi config set --path 'nodePools.cpu.disruption.budgetPercent' "
                                                  "<valid value>"}),
    ({"nodePools": karpenter_pools(cpu={"disruption": {"consolidationPolicy": "Sometimes"}})}, {
        "nodePools.cpu.disruption.consolidationPolicy":
            "Input should be 'WhenEmptyOrUnderutilized', 'WhenEmpty' or 'Balanced' (got 'Sometimes') / "
            "pulumi config set --path 'nodePools.cpu.disruption.consolidationPolicy' <valid value>"}),
    # Limits smaller than one node of every admitted type: the pool could never launch.
    ({"nodePools": karpenter_pools(cpu={"limits": {"cpu": 1}})}, {
        "nodePools.cpu.limits.cpu": "1 is less than one node, so Karpenter would launch nothing: the smallest "
                                    "instance type it admits, m7i.large, has 2 vCPUs, 8Gi memory / pulumi config set "
                                    "--path 'nodePools.cpu.limits.cpu' 2 or more (a multiple of it: the nodes it may "
                                    "hold), or admit smaller types"}),
    ({"nodePools": karpenter_pools(cpu={"limits": {"cpu": 8, "memory": "4Gi"}})}, {
        "nodePools.cpu.limits.memory": "4Gi is less than one node, so Karpenter would launch nothing: the smallest "
                                       "instance type it admits, m7i.large, has 2 vCPUs, 8Gi memory / pulumi config "
                                       "set --path 'nodePools.cpu.limits.memory' 8Gi or more (a multiple of it: the "
                                       "nodes it may hold), or admit smaller types"}),
    ({"nodePools": karpenter_pools(gpu={"instanceTypes": ["g5.2xlarge"], "limits": {"cpu": 4, "gpus": 1}})}, {
        "nodePools.gpu.limits.cpu": "4 is less than one node, so Karpenter would launch nothing: the smallest "
                                    "instance type it admits, g5.2xlarge, has 8 vCPUs, 32Gi memory and 1 GPU / "
                                    "pulumi config set --path 'nodePools.gpu.limits.cpu' 8 or more (a multiple of it: "
                                    "the nodes it may hold), or admit smaller types"}),
    # Instance categories: known, CPU only, around the families they are given with.
    ({"nodePools": karpenter_pools(cpu={"instanceCategories": ["q"]})}, {
        "nodePools.cpu.instanceCategories[0]": "'q' is not an EC2 instance category / use a category such as c, m "
                                               "or r (the letters before the generation in m7i)"}),
    ({"nodePools": karpenter_pools(cpu={"instanceCategories": ["g"]})}, {
        "nodePools.cpu.instanceCategories[0]": "'g' is a GPU category: a CPU pool would launch GPU instances from it "
                                               "/ use CPU categories such as c, m or r; a GPU pool takes "
                                               "instanceFamilies"}),
    ({"nodePools": karpenter_pools(cpu={"instanceCategories": ["c"]})}, {
        "nodePools.cpu.instanceCategories": "m7i is outside instanceCategories (c), and Karpenter admits only "
                                            "families inside them: it would never launch / add category m or remove "
                                            "the family"}),
    ({"nodePools": karpenter_pools(cpu={"instanceTypes": ["m7i.large"], "instanceFamilies": [],
                                        "instanceCategories": ["m"]})}, {
        "nodePools.cpu.instanceCategories": "give instanceTypes or instanceCategories, not both / pulumi config rm "
                                            "--path 'nodePools.cpu.instanceTypes' (categories let Karpenter pick the "
                                            "type)"}),
    ({"nodePools": karpenter_pools(gpu={"instanceCategories": ["c"]})}, {
        "nodePools.gpu.instanceCategories": "a GPU pool takes GPU families (one accelerator model), not categories "
                                            "/ pulumi config rm --path 'nodePools.gpu.instanceCategories'"}),
    ({"systemPool": {"size": 1}}, {
        "systemPool.size": "Input should be greater than or equal to 2 (got 1) / "
                           "pulumi config set --path 'systemPool.size' <valid value>"}),
    ({"systemPool": {"instanceTypes": ["g5.xlarge"]}}, {
        "systemPool.instanceTypes": "g5.xlarge carries an NVIDIA GPU, wasted on add-ons / use CPU types: "
                                    "pulumi config set --path 'systemPool.instanceTypes[0]' m7i.large"}),
    ({"nodePools": {"system": KARPENTER_POOLS["cpu"]}, "modelService": {"pool": "system"}}, {
        "nodePools.system": "'system' is the system node group's pool (systemPool) with Karpenter / "
                            "rename the pool, e.g. nodePools.general"}),
    ({"nodeProvisioner": "cluster-autoscaler", "systemPool": {"size": 3}, "nodePools": GOOD_POOLS}, {
        "systemPool": "is read with nodeProvisioner karpenter only: with cluster-autoscaler, system pods run on the "
                      "CPU pool with minSize >= 1 / pulumi config rm systemPool"}),
    ({"nodeProvisioner": "cluster-autoscaler", "systemPool": {},
      "nodePools": pools(cpu={"limits": {"cpu": 3}, "disruption": {"budgetPercent": 5}})}, {
        "nodePools.cpu.limits": "is not read with nodeProvisioner cluster-autoscaler (its pools take minSize and "
                                "maxSize) / pulumi config rm --path 'nodePools.cpu.limits'",
        "nodePools.cpu.disruption": "is not read with nodeProvisioner cluster-autoscaler (its pools take minSize and "
                                    "maxSize) / pulumi config rm --path 'nodePools.cpu.disruption'"}),
])
def test_each_karpenter_problem_reads_exactly(overrides: dict[str, Any], expected: dict[str, str]) -> None:
    assert problems("dev", **overrides) == expected


def test_instance_categories_combine_with_families_or_stand_alone() -> None:
    for cpu in ({"instanceCategories": ["m", "c"]}, {"instanceCategories": ["m"], "instanceFamilies": ["m7i"]},
                {"instanceFamilies": [], "instanceCategories": ["c"]}):
        settings = load("dev", nodePools=karpenter_pools(cpu=cpu))
        assert settings.node_pools["cpu"].instance_categories == cpu["instanceCategories"]


def test_the_committed_stacks_are_karpenter_stacks() -> None:
    for stack in ("dev", "staging", "prod"):
        settings = load(stack)
        assert settings.karpenter and settings.system_pool == "system"
        assert all(pool.limits is not None for pool in settings.node_pools.values())
