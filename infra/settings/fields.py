"""Field types with their own checks: each rejects a bad value with a `problem` naming a fix."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator

from infra import instance_types
from infra.settings.artifact import FORMATS, located
from infra.settings.problems import Invalid, problem, set_command
from infra.versions import KUBERNETES_RELEASES

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
                      1096, 1827, 2192, 2557, 2922, 3288, 3653)
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
PRINCIPAL_ARN_PATTERN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
POOL_NAME_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,22}[a-z0-9])?$")
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
ACM_ARN_PATTERN = re.compile(
    r"^arn:aws(-[a-z]+)*:acm:(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d{1,2}):\d{12}:certificate/[0-9a-f-]{36}$")
# A DNS name of at least two labels, lowercase (ACM and Route 53 compare names case-insensitively).
HOSTNAME_PATTERN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
HOSTED_ZONE_ID_PATTERN = re.compile(r"^Z[A-Z0-9]{1,31}$")
# What SNS accepts as an email subscription endpoint, loosely: one @ and a dotted domain.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[a-z0-9-]+(\.[a-z0-9-]+)+$", re.IGNORECASE)
# Four dotted decimals without leading zeros, then a decimal prefix length of 0-32.
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
CIDR_NOTATION = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}/(3[0-2]|[12]?\d)$")
# Karpenter's duration syntax (NodePool CRD: consolidateAfter, expireAfter, terminationGracePeriod):
# Go units s, m and h only, chained (1h30m); "Never" where the field allows it.
DURATION_PATTERN = re.compile(r"^([0-9]+(s|m|h))+$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
CPU_PATTERN = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<milli>m)?$")
MEMORY_PATTERN = re.compile(r"^(?P<number>\d+)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T)?$")
MEMORY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

Value = TypeVar("Value")


def checked(check: Callable[[Value], None]) -> AfterValidator:
    """A validator from a function that raises `Invalid` and otherwise returns nothing."""

    def validate(value: Value) -> Value:
        check(value)
        return value

    return AfterValidator(validate)


def matching(pattern: re.Pattern[str], message: str, fix: str) -> AfterValidator:
    """A string that must match `pattern`; the message may name it as {value}."""

    def check(value: str) -> None:
        if not pattern.match(value):
            raise Invalid(problem(message.format(value=value), fix))

    return checked(check)


def cpu_cores(quantity: str) -> float:
    match = CPU_PATTERN.match(quantity)
    assert match is not None
    return float(match["number"]) / (1000 if match["milli"] else 1)


def memory_bytes(quantity: str) -> int:
    match = MEMORY_PATTERN.match(quantity)
    assert match is not None
    return int(match["number"]) * MEMORY_UNITS[match["unit"]]


def duration_seconds(duration: str) -> int:
    """1h30m → 5400 (a duration that matched DURATION_PATTERN)."""
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in re.findall(r"([0-9]+)([smh])", duration))


def _duration(value: str) -> None:
    if not DURATION_PATTERN.match(value) or duration_seconds(value) == 0:
        raise Invalid(problem(f"'{value}' is not a duration Karpenter reads", "write it like 30s, 5m, 1h or 1h30m"))


def _duration_or_never(value: str) -> None:
    if value != "Never":
        _duration(value)


def _known(value: str, known: frozenset[str], cutoff: float, noun: str, example: str) -> None:
    if value not in known:
        suggestion = instance_types.closest(value, known, cutoff)
        raise Invalid(problem(
            f"'{value}' is not an EC2 instance {noun}" + (f"; did you mean '{suggestion}'?" if suggestion else ""),
            f"use '{suggestion}'" if suggestion else f"use a {noun} such as {example}"))


def _instance_family(value: str) -> None:
    _known(value, instance_types.known_families(), 0.6, "family",
           "m7i, c7i or g6 (the part of an instance type before the dot)")
    if instance_types.is_arm64(value):
        raise Invalid(problem(f"'{value}' is an Arm (Graviton) family, but node pools run x86_64 AL2023 AMIs",
                              "use an x86_64 family such as m7i, c7i or g6"))


def _instance_category(value: str) -> None:
    _known(value, instance_types.known_categories(), 0.5, "category",
           "c, m or r (the letters before the generation in m7i)")
    if value in instance_types.GPU_CATEGORIES:
        raise Invalid(problem(f"'{value}' is a GPU category: a CPU pool would launch GPU instances from it",
                              "use CPU categories such as c, m or r; a GPU pool takes instanceFamilies"))


def _instance_type(value: str) -> None:
    _known(value, instance_types.known_types(), 0.75, "type",
           "m7i.large (aws ec2 describe-instance-types)")
    if instance_types.is_arm64(value):
        raise Invalid(problem(f"'{value}' is an Arm (Graviton) type, but node pools run x86_64 AL2023 AMIs",
                              "use an x86_64 type such as m7i.large or g5.xlarge"))


def _ipv4_cidr(value: str, reader: str = "AWS") -> None:
    """An IPv4 block in CIDR notation and nothing looser: AWS's APIs, and Go's net.ParseCIDR in the
    load balancer controller, take no bare address, netmask or leading zero (Python's ipaddress does)."""
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as error:
        raise Invalid(problem(f"'{value}' is not an IPv4 CIDR block ({error})", "write it like 203.0.113.0/24")) \
            from None
    if not CIDR_NOTATION.match(value):
        raise Invalid(problem(f"'{value}' is not in CIDR notation (address/prefix length), the only form {reader} "
                              "accepts", f"write it as {network.with_prefixlen}"))


def _load_balancer_cidr(value: str) -> None:
    # The controller turns these into the ALB's security-group rules with Go's net.ParseCIDR; an entry
    # it cannot parse leaves the Ingress without a load balancer, and `pulumi up` waits until it times out
    # (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/#inbound-cidrs).
    _ipv4_cidr(value, reader="the AWS Load Balancer Controller (Go's net.ParseCIDR)")


def _vpc_cidr(value: str) -> None:
    _ipv4_cidr(value)
    network = ipaddress.IPv4Network(value)
    if not 16 <= network.prefixlen <= 28:
        raise Invalid(problem(f"a VPC CIDR must be between /16 and /28, got /{network.prefixlen}",
                              "use a block such as 10.0.0.0/16"))
    if not network.is_private:
        raise Invalid(problem(f"'{value}' is not a private (RFC 1918) range",
                              "use a block inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"))


def _kubernetes_version(value: str) -> None:
    if value not in KUBERNETES_RELEASES:
        supported = sorted(KUBERNETES_RELEASES)
        raise Invalid(problem(f"'{value}' is not supported; choose one of {', '.join(supported)}",
                              set_command("kubernetesVersion", supported[-1])))


def _retention_days(value: int) -> None:
    if value not in LOG_RETENTION_DAYS:
        allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
        raise Invalid(problem(f"{value} is not a CloudWatch Logs retention period; choose one of {allowed}",
                              "use the nearest allowed period, e.g. 90"))


def _cpu(value: str) -> None:
    if not CPU_PATTERN.match(value) or cpu_cores(value) <= 0:
        raise Invalid(problem(f"'{value}' is not a CPU quantity", "write cores like 500m, 1 or 1.5"))


def _memory(value: str) -> None:
    if not MEMORY_PATTERN.match(value) or memory_bytes(value) <= 0:
        raise Invalid(problem(f"'{value}' is not a memory quantity", "write bytes like 512Mi or 2Gi"))


def _model_format(value: str) -> None:
    if value not in FORMATS:
        raise Invalid(problem(f"'{value}' is not a model format; choose one of {', '.join(FORMATS)}",
                              "pulumi config set --path 'modelService.format' <format>, or remove it to let the "
                              "file decide"))


def _model_file(value: str) -> None:
    _, problems = located(value)
    if problems:
        raise Invalid(*problems)


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
Hostname = Annotated[str, matching(HOSTNAME_PATTERN, "'{value}' is not a DNS name",
                                   "write it like iris.ml.example.com (lowercase, no scheme or path)")]
HostedZoneId = Annotated[str, matching(HOSTED_ZONE_ID_PATTERN, "'{value}' is not a Route 53 hosted zone ID",
                                       "use the zone's ID, e.g. Z0123456789ABCDEFGHIJ (aws route53 list-hosted-zones)")]
EmailAddress = Annotated[str, matching(EMAIL_PATTERN, "'{value}' is not an email address",
                                       "write it like oncall@example.com")]
InstanceTypeName = Annotated[str, checked(_instance_type)]
InstanceFamilyName = Annotated[str, checked(_instance_family)]
InstanceCategoryName = Annotated[str, checked(_instance_category)]
Duration = Annotated[str, checked(_duration)]
DurationOrNever = Annotated[str, checked(_duration_or_never)]
Ipv4Cidr = Annotated[str, checked(_ipv4_cidr)]
LoadBalancerCidr = Annotated[str, checked(_load_balancer_cidr)]
VpcCidr = Annotated[str, checked(_vpc_cidr)]
KubernetesVersion = Annotated[str, checked(_kubernetes_version)]
RetentionDays = Annotated[int, checked(_retention_days)]
CpuQuantity = Annotated[str, checked(_cpu)]
MemoryQuantity = Annotated[str, checked(_memory)]
ModelFormat = Annotated[str, checked(_model_format)]
ModelFile = Annotated[str, checked(_model_file)]
