"""Stack config → typed, validated settings. ALL validation of stack config lives here.

`Pulumi.yaml` declares every key (type, description, default); a stack file holds
values only. `load_settings` turns the raw values into frozen models and reports
every problem at once, each with its key path and a command that fixes it, before
the program declares a single resource.
"""

from __future__ import annotations

import difflib
import inspect
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from infra import addressing, instance_types
from infra.versions import KUBERNETES_RELEASES

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT_FILE = PROJECT_DIR / "Pulumi.yaml"

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
                      1096, 1827, 2192, 2557, 2922, 3288, 3653)
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
PRINCIPAL_ARN_PATTERN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
POOL_NAME_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$")
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
ACM_ARN_PATTERN = re.compile(
    r"^arn:aws(-[a-z]+)*:acm:(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d{1,2}):\d{12}:certificate/[0-9a-f-]{36}$")
CPU_PATTERN = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<milli>m)?$")
MEMORY_PATTERN = re.compile(r"^(?P<number>\d+)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
MEMORY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


# ---------------------------------------------------------------------------
# Problems and the one error that lists them all
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str


class StackConfigError(Exception):
    """Every problem in a stack's config, in one message an operator can act on."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.stack = stack
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"Invalid stack config for '{self.stack}' ({count} problem{'s' if count != 1 else ''}):"]
        for problem in self.problems:
            lines.append(f"  {problem.path}: {problem.message}")
            lines.append(f"      fix: {problem.fix}")
        return "\n".join(lines)


def set_command(path: str, value: object) -> str:
    if "." in path or "[" in path:
        return f"pulumi config set --path '{path}' {value}"
    return f"pulumi config set {path} {value}"


def key_path(loc: tuple[str | int, ...]) -> str:
    """('nodePools', 'gpu', 'instanceTypes', 0) → nodePools.gpu.instanceTypes[0], as `--path` spells it."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for an invalid mapping key: the key itself is the path
            path += f".{part}" if path else part
    return path


def problem_error(field: str, message: str, fix: str) -> InitErrorDetails:
    """One problem found by a validator, located at `field` below the model being validated."""
    return InitErrorDetails(
        type=PydanticCustomError("stack_config", message, {"fix": fix}),
        loc=tuple(field.split(".")),
        input=None,
    )


def raise_problems(model: str, errors: list[InitErrorDetails]) -> None:
    if errors:
        raise ValidationError.from_exception_data(model, errors)


# ---------------------------------------------------------------------------
# Field types with their own checks
# ---------------------------------------------------------------------------


def matching(pattern: re.Pattern[str], message: str, fix: str) -> AfterValidator:
    """A string that must match `pattern`; the message may name it as {value}."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise PydanticCustomError("stack_config", message, {"value": value, "fix": fix})
        return value

    return AfterValidator(check)


Region = Annotated[str, matching(REGION_PATTERN, "'{value}' is not an AWS region name",
                                 "pulumi config set region us-east-1")]
PrincipalArn = Annotated[str, matching(
    PRINCIPAL_ARN_PATTERN, "'{value}' is not an IAM role or user ARN",
    "use arn:aws:iam::<account>:role/<name> (for an assumed-role session, its role's ARN)")]
PoolName = Annotated[str, matching(
    POOL_NAME_PATTERN, "pool name '{value}' must be 1-24 lowercase letters, digits or '-', starting with a letter "
    "(it becomes part of AWS names and Kubernetes labels)", "rename the pool, e.g. nodePools.gpu-large")]
CertificateArn = Annotated[str, matching(
    ACM_ARN_PATTERN, "'{value}' is not an ACM certificate ARN",
    "use arn:aws:acm:<region>:<account>:certificate/<id> (aws acm list-certificates), "
    "or remove it to serve plain HTTP")]
ModelName = Annotated[str, matching(MODEL_NAME_PATTERN, "'{value}' cannot be a model name in URLs",
                                    "use lowercase letters, digits, '.', '_' or '-', e.g. iris")]


def _instance_type(value: str) -> str:
    if not instance_types.INSTANCE_TYPE_PATTERN.match(value):
        raise PydanticCustomError(
            "stack_config", "'{value}' is not an EC2 instance type", {"value": value,
                                                                      "fix": "use a type such as m7i.large"})
    if instance_types.is_arm64(value):
        raise PydanticCustomError(
            "stack_config",
            "'{value}' is an Arm (Graviton) type, but node pools run x86_64 AL2023 AMIs",
            {"value": value, "fix": "use an x86_64 type such as m7i.large or g5.xlarge"})
    return value


def _ipv4_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise PydanticCustomError(
            "stack_config", "'{value}' is not an IPv4 CIDR block ({reason})",
            {"value": value, "reason": str(error), "fix": "write it like 203.0.113.0/24"}) from None
    return str(network)


def _vpc_cidr(value: str) -> str:
    network = ipaddress.IPv4Network(_ipv4_cidr(value))
    if not 16 <= network.prefixlen <= 28:
        raise PydanticCustomError(
            "stack_config", "a VPC CIDR must be between /16 and /28, got /{prefix}",
            {"prefix": network.prefixlen, "fix": "use a block such as 10.0.0.0/16"})
    if not network.is_private:
        raise PydanticCustomError(
            "stack_config", "'{value}' is not a private (RFC 1918) range",
            {"value": value, "fix": "use a block inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"})
    return value


def _kubernetes_version(value: str) -> str:
    if value not in KUBERNETES_RELEASES:
        supported = ", ".join(sorted(KUBERNETES_RELEASES))
        raise PydanticCustomError(
            "stack_config", "'{value}' is not supported; choose one of {supported}",
            {"value": value, "supported": supported,
             "fix": f"pulumi config set kubernetesVersion {sorted(KUBERNETES_RELEASES)[-1]}"})
    return value


def _retention_days(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
        raise PydanticCustomError(
            "stack_config", "{value} is not a CloudWatch Logs retention period; choose one of {allowed}",
            {"value": value, "allowed": allowed, "fix": "pulumi config set controlPlaneLogRetentionDays 90"})
    return value


def _cpu(value: str) -> str:
    if not CPU_PATTERN.match(value) or cpu_cores(value) <= 0:
        raise PydanticCustomError("stack_config", "'{value}' is not a CPU quantity",
                                  {"value": value, "fix": "write cores like 500m, 1 or 1.5"})
    return value


def _memory(value: str) -> str:
    if not MEMORY_PATTERN.match(value) or memory_bytes(value) <= 0:
        raise PydanticCustomError("stack_config", "'{value}' is not a memory quantity",
                                  {"value": value, "fix": "write bytes like 512Mi or 2Gi"})
    return value


def cpu_cores(quantity: str) -> float:
    match = CPU_PATTERN.match(quantity)
    assert match is not None
    return float(match["number"]) / (1000 if match["milli"] else 1)


def memory_bytes(quantity: str) -> int:
    match = MEMORY_PATTERN.match(quantity)
    assert match is not None
    return int(match["number"]) * MEMORY_UNITS[match["unit"]]


InstanceType = Annotated[str, AfterValidator(_instance_type)]
Ipv4Cidr = Annotated[str, AfterValidator(_ipv4_cidr)]


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


class ConfigModel(BaseModel):
    """Frozen, no unknown keys, camelCase keys as written in stack config."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=False
    )


class NodePoolSettings(ConfigModel):
    """One managed node group. Pools are a map keyed by name, so adding one never renames another."""

    instance_types: list[InstanceType] = Field(min_length=1, description="EC2 instance types, x86_64.")
    gpu: bool = Field(False, description="NVIDIA GPU pool: GPU AMI, taint and accelerator label. Never guessed.")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field(
        "ON_DEMAND", description="How instances are bought; SPOT is cheaper but can be reclaimed.")
    min_size: int = Field(ge=0, le=1000, description="Fewest nodes; 0 lets the autoscaler empty the pool.")
    max_size: int = Field(ge=1, le=1000, description="Most nodes the autoscaler may start.")
    desired_size: int | None = Field(
        None, description="Nodes at creation (default minSize); the autoscaler owns the count afterwards.")
    disk_size_gib: int = Field(50, ge=20, le=16384, description="Size in GiB of the encrypted gp3 root volume.")
    max_unavailable_percentage: int = Field(33, ge=1, le=100, description="Nodes replaced at once on update.")

    @model_validator(mode="after")
    def _consistent(self) -> NodePoolSettings:
        errors: list[InitErrorDetails] = []
        if self.min_size > self.max_size:
            errors.append(problem_error(
                "maxSize", f"{self.max_size} is less than minSize {self.min_size}",
                f"raise maxSize to at least {self.min_size} or lower minSize"))
        elif self.desired_size is not None and not self.min_size <= self.desired_size <= self.max_size:
            errors.append(problem_error(
                "desiredSize", f"{self.desired_size} is outside [minSize {self.min_size}, maxSize {self.max_size}]",
                f"set desiredSize between {self.min_size} and {self.max_size}, or remove it"))
        without_gpu = [t for t in self.instance_types if instance_types.accelerator(t) is None]
        with_gpu = [t for t in self.instance_types if instance_types.accelerator(t) is not None]
        if self.gpu and without_gpu:
            errors.append(problem_error(
                "instanceTypes", f"gpu is true but {', '.join(without_gpu)} has no NVIDIA GPU",
                "use GPU types such as g5.xlarge, g6.xlarge or g4dn.xlarge, or set gpu: false"))
        if not self.gpu and with_gpu:
            errors.append(problem_error(
                "instanceTypes", f"{', '.join(with_gpu)} carries an NVIDIA GPU but gpu is false",
                "set gpu: true so the pool gets the GPU AMI and taint, or use CPU types"))
        if self.gpu and not without_gpu and len({instance_types.accelerator(t) for t in with_gpu}) > 1:
            errors.append(problem_error(
                "instanceTypes", f"{', '.join(with_gpu)} mix GPU models; one pool carries one accelerator label",
                "split them into one pool per GPU model"))
        raise_problems("NodePoolSettings", errors)
        return self

    @property
    def initial_size(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size

    @property
    def accelerator(self) -> str | None:
        return instance_types.accelerator(self.instance_types[0]) if self.gpu else None


class ModelServiceSettings(ConfigModel):
    """The model-serving workload: how many replicas, where they run, what each may use."""

    name: ModelName = Field("iris", description="Model name in the URLs.")
    version: ModelName = Field("1", description="Model version served.")
    pool: str = Field("cpu", description="Node pool the pods run on (a key of nodePools).")
    gpus: int = Field(0, ge=0, le=8, description="NVIDIA GPUs per pod; more than 0 needs a GPU pool.")
    replicas: int = Field(2, ge=1, le=100, description="Pods at creation; the autoscaler owns the count afterwards.")
    min_replicas: int = Field(2, ge=1, le=100, description="Fewest pods the autoscaler keeps.")
    max_replicas: int = Field(6, ge=1, le=100, description="Most pods the autoscaler starts.")
    target_cpu_utilization: int = Field(
        70, ge=10, le=100, description="CPU use (% of request) the autoscaler aims at.")
    cpu_request: Annotated[str, AfterValidator(_cpu)] = Field("1", description="CPU reserved per pod.")
    cpu_limit: Annotated[str, AfterValidator(_cpu)] = Field(
        "1", description="CPU cap per pod; sets the server's workers.")
    memory_request: Annotated[str, AfterValidator(_memory)] = Field("512Mi", description="Memory reserved per pod.")
    memory_limit: Annotated[str, AfterValidator(_memory)] = Field("1Gi", description="Memory cap per pod.")
    max_batch_size: int = Field(1024, ge=1, le=65536, description="Most rows per predict call.")
    max_batch_wait_ms: float = Field(0.0, ge=0, le=1000, description="How long a request may wait to share a batch.")
    prediction_log_sample_rate: float = Field(
        0.01, ge=0, le=1, description="Fraction of requests whose inputs and outputs go to the shared log volume.")
    certificate_arn: CertificateArn | None = Field(
        None, description="ACM certificate for HTTPS (HTTP redirects to it); none: plain HTTP.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelServiceSettings:
        errors: list[InitErrorDetails] = []
        if self.min_replicas > self.max_replicas:
            errors.append(problem_error(
                "minReplicas", f"{self.min_replicas} is above maxReplicas {self.max_replicas}",
                f"lower minReplicas to at most {self.max_replicas} or raise maxReplicas"))
        elif not self.min_replicas <= self.replicas <= self.max_replicas:
            errors.append(problem_error(
                "replicas", f"{self.replicas} is outside [minReplicas {self.min_replicas}, "
                            f"maxReplicas {self.max_replicas}]",
                f"set replicas between {self.min_replicas} and {self.max_replicas}"))
        if cpu_cores(self.cpu_limit) < cpu_cores(self.cpu_request):
            errors.append(problem_error(
                "cpuLimit", f"{self.cpu_limit} is below cpuRequest {self.cpu_request}",
                f"raise cpuLimit to at least {self.cpu_request} or lower cpuRequest"))
        if memory_bytes(self.memory_limit) < memory_bytes(self.memory_request):
            errors.append(problem_error(
                "memoryLimit", f"{self.memory_limit} is below memoryRequest {self.memory_request}",
                f"raise memoryLimit to at least {self.memory_request} or lower memoryRequest"))
        raise_problems("ModelServiceSettings", errors)
        return self

    @property
    def workers(self) -> int:
        """Server worker processes: one per whole CPU the pod may use."""
        return max(1, int(cpu_cores(self.cpu_limit)))


class StackSettings(ConfigModel):
    """Everything a stack's config says, validated. Field aliases are the config keys."""

    # Supplied by the Pulumi runtime, not by config (see RUNTIME_FIELDS).
    project: str
    stack: str

    environment: Literal["dev", "staging", "prod"]
    region: Region
    availability_zones: list[str]
    az_count: int = Field(ge=1, le=6)
    vpc_cidr: Annotated[str, AfterValidator(_vpc_cidr)]
    nat_gateways: Literal["single", "perAz"]
    kubernetes_version: Annotated[str, AfterValidator(_kubernetes_version)]
    endpoint_public_access_cidrs: list[Ipv4Cidr]
    admin_principal_arns: list[PrincipalArn]
    control_plane_log_retention_days: Annotated[int, AfterValidator(_retention_days)]
    node_pools: dict[PoolName, NodePoolSettings]
    ecr_keep_images: int = Field(ge=1, le=1000)
    retain_data_on_destroy: bool
    model_service: ModelServiceSettings

    @property
    def production(self) -> bool:
        return self.environment == "prod"

    @property
    def name(self) -> str:
        """Prefix of every physical name; also the EKS cluster's name."""
        return f"{self.project}-{self.stack}"

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def system_pool(self) -> str:
        """The CPU pool that always has nodes: cluster add-ons and controllers run there."""
        return next(name for name, pool in self.node_pools.items() if not pool.gpu and pool.min_size >= 1)

    @property
    def has_gpu_pool(self) -> bool:
        return any(pool.gpu for pool in self.node_pools.values())

    @property
    def zone_count(self) -> int:
        return len(self.availability_zones) or self.az_count

    @cached_property
    def subnet_cidrs(self) -> list[tuple[str, str]]:
        """(private, public) CIDR for each zone, in zone order."""
        return addressing.split_vpc_cidr(self.vpc_cidr, self.zone_count)

    @property
    def tags(self) -> dict[str, str]:
        """Carried by every taggable AWS resource (set explicitly: provider default tags
        are invisible to previews' per-resource diffs and to our offline synthesis)."""
        return {"project": self.project, "stack": self.stack, "environment": self.environment,
                "managed-by": "pulumi"}


# ---------------------------------------------------------------------------
# Checks across keys: each names the settings it needs and runs when they parsed
# ---------------------------------------------------------------------------


def _check_zone_count(availability_zones: list[str], az_count: int) -> Iterator[Problem]:
    if availability_zones and len(availability_zones) < 2:
        yield Problem("availabilityZones", f"{len(availability_zones)} zone given; EKS needs subnets in at least 2",
                      "list two or more zones, e.g. [\"us-east-1a\", \"us-east-1b\"]")
    elif not availability_zones and az_count < 2:
        yield Problem("azCount", f"{az_count} zone; EKS needs subnets in at least 2", set_command("azCount", 2))


def _check_zone_names(availability_zones: list[str], region: str) -> Iterator[Problem]:
    for index, zone in enumerate(availability_zones):
        if not re.fullmatch(re.escape(region) + r"[a-z]", zone):
            yield Problem(f"availabilityZones[{index}]", f"'{zone}' is not a zone of region {region}",
                          f"use a zone such as {region}a")
    if len(set(availability_zones)) != len(availability_zones):
        yield Problem("availabilityZones", "lists a zone twice", "list each zone once")


def _check_vpc_size(vpc_cidr: str, availability_zones: list[str], az_count: int) -> Iterator[Problem]:
    zones = len(availability_zones) or az_count
    prefix = addressing.subnet_prefix(vpc_cidr, zones)
    if prefix > addressing.MIN_SUBNET_PREFIX:
        widest = vpc_cidr.split("/")[1]
        needed = addressing.MIN_SUBNET_PREFIX - (prefix - int(widest))
        yield Problem(
            "vpcCidr",
            f"{vpc_cidr} is too small for {zones} zone(s): each of its {2 * zones} subnets would be /{prefix}, "
            f"and pods need at least /{addressing.MIN_SUBNET_PREFIX}",
            f"use a /{needed} or larger, e.g. " + set_command("vpcCidr", f"10.0.0.0/{min(needed, 16)}"))


def _check_system_pool(node_pools: dict[str, NodePoolSettings]) -> Iterator[Problem]:
    if not any(not pool.gpu and pool.min_size >= 1 for pool in node_pools.values()):
        yield Problem(
            "nodePools",
            "no CPU pool (gpu: false) with minSize >= 1 to run system pods (CoreDNS, controllers, autoscaler)",
            set_command("nodePools.cpu.minSize", 2))


def _check_public_endpoint(environment: str, endpoint_public_access_cidrs: list[str]) -> Iterator[Problem]:
    if environment == "prod":
        for index, cidr in enumerate(endpoint_public_access_cidrs):
            if ipaddress.IPv4Network(cidr).prefixlen == 0:
                yield Problem(
                    f"endpointPublicAccessCidrs[{index}]",
                    f"{cidr} opens the prod Kubernetes API to the whole internet",
                    "list only your office, VPN or CI runner ranges, or [] for a private-only endpoint")


def _check_model_placement(model_service: ModelServiceSettings,
                           node_pools: dict[str, NodePoolSettings]) -> Iterator[Problem]:
    pool = node_pools.get(model_service.pool)
    if pool is None:
        yield Problem("modelService.pool", f"'{model_service.pool}' is not a node pool; pools: "
                      + ", ".join(node_pools), set_command("modelService.pool", next(iter(node_pools), "cpu")))
        return
    gpu_pools = [name for name, candidate in node_pools.items() if candidate.gpu]
    if model_service.gpus and not pool.gpu:
        where = f"use one of the GPU pools: {', '.join(gpu_pools)}" if gpu_pools else (
            "this stack has no GPU pool: add one to nodePools (gpu: true), or set gpus: 0")
        yield Problem("modelService.gpus", f"{model_service.gpus} GPU(s) requested, but pool "
                      f"'{model_service.pool}' has no GPUs", where)
    if pool.gpu and not model_service.gpus:
        yield Problem("modelService.gpus", f"0 GPUs requested on GPU pool '{model_service.pool}' "
                      "(its taint keeps CPU-only pods off, and it would waste the GPUs)",
                      set_command("modelService.gpus", 1) + " or move the model to a CPU pool")


def _check_certificate_region(model_service: ModelServiceSettings, region: str) -> Iterator[Problem]:
    match = ACM_ARN_PATTERN.match(model_service.certificate_arn or "")
    if match and match["region"] != region:
        yield Problem("modelService.certificateArn",
                      f"the certificate is in {match['region']}, but a load balancer in {region} "
                      "can only use certificates from its own region", f"request or import one in {region}")


RUNTIME_FIELDS = frozenset({"project", "stack"})

CROSS_CHECKS: list[Callable[..., Iterator[Problem]]] = [
    _check_zone_count,
    _check_zone_names,
    _check_vpc_size,
    _check_system_pool,
    _check_public_endpoint,
    _check_model_placement,
    _check_certificate_region,
]


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def declared_keys(project_file: Path = PROJECT_FILE) -> dict[str, dict[str, Any]]:
    """The `config:` declarations of Pulumi.yaml (key → type, description, default)."""
    declarations: dict[str, dict[str, Any]] = yaml.safe_load(project_file.read_text())["config"]
    return declarations


def project_name(project_file: Path = PROJECT_FILE) -> str:
    return str(yaml.safe_load(project_file.read_text())["name"])


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {', '.join(map(repr, duplicates))}")
    return dict(pairs)


def decode_config(raw: Mapping[str, str], project: str, declarations: Mapping[str, Mapping[str, Any]],
                  ) -> tuple[dict[str, Any], list[Problem]]:
    """Pulumi hands config to the program as strings (structured values JSON-encoded).
    Keep this project's keys, decode the structured ones, report undeclared keys."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    prefix = f"{project}:"
    for full_key, text in raw.items():
        if not full_key.startswith(prefix):
            continue  # other namespaces (aws:, pulumi:) belong to providers and the engine
        key = full_key[len(prefix):]
        declaration = declarations.get(key)
        if declaration is None:
            close = difflib.get_close_matches(key, declarations, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(key, "is not a config key of this project (Pulumi.yaml declares them all)",
                                    f"{hint}remove it: pulumi config rm {key}"))
            continue
        if declaration.get("type", "object") in ("array", "object"):
            try:
                values[key] = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
            except ValueError as error:
                problems.append(Problem(key, f"is not valid structured config: {error}",
                                        f"set it again with pulumi config set --path '{key}...'"))
                continue
        else:
            values[key] = text
    return values, problems


def _setting_names() -> set[str]:
    return {field.alias or name for model in ConfigModel.__subclasses__() for name, field in model.model_fields.items()}


def _pydantic_problems(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> Iterator[Problem]:
    for detail in error.errors():
        loc = prefix + tuple(detail["loc"])
        path = key_path(loc)
        ctx = detail.get("ctx") or {}
        if detail["type"] == "missing":
            yield Problem(path, "is required", set_command(path, "<value>"))
        elif detail["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _setting_names(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            yield Problem(path, "is not a known setting here", f"{hint}remove it: pulumi config rm --path '{path}'")
        elif "fix" in ctx:
            yield Problem(path, detail["msg"], ctx["fix"])
        else:
            yield Problem(path, f"{detail['msg']} (got {detail['input']!r})", set_command(path, "<valid value>"))


def load_settings(raw_config: Mapping[str, str], *, project: str, stack: str,
                  project_file: Path = PROJECT_FILE) -> StackSettings:
    """Validate a stack's whole config; raise StackConfigError listing every problem."""
    declarations = declared_keys(project_file)
    values, problems = decode_config(raw_config, project, declarations)

    parsed: dict[str, Any] = {}
    for name, field in StackSettings.model_fields.items():
        if name in RUNTIME_FIELDS:
            continue
        key = field.alias or name
        if key not in values:
            problems.append(Problem(key, "is required (declared in Pulumi.yaml without a default)",
                                    set_command(key, "<value>")))
            continue
        annotation: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            parsed[name] = adapter.validate_python(values[key])
        except ValidationError as error:
            problems.extend(_pydantic_problems(error, (key,)))

    for check in CROSS_CHECKS:
        needed = list(inspect.signature(check).parameters)
        if all(name in parsed for name in needed):
            problems.extend(check(**{name: parsed[name] for name in needed}))

    if problems:
        raise StackConfigError(stack, problems)
    # Every field was validated above, one by one; build the model from those values.
    return StackSettings.model_construct(project=project, stack=stack, **parsed)


def settings_from_runtime() -> StackSettings:
    """The running stack's settings. The Python language host passes config as the
    PULUMI_CONFIG environment variable; tests and offline synthesis set it in-process."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return load_settings(raw, project=pulumi.get_project(), stack=pulumi.get_stack())
