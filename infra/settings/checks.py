"""Checks across keys of a stack's config.

Each check declares the settings it reads (`@cross_check("region", ...)`) and receives a
`StackSettings` holding only those: reading an undeclared field raises at once, and a
declared name that is not a field fails at import. The loader runs a check only when all
of its inputs parsed, so one bad key never hides another key's problems.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic.alias_generators import to_camel

from infra import addressing, instance_types
from infra.settings import artifact
from infra.settings.fields import ACM_ARN_PATTERN, memory_bytes
from infra.settings.models import (
    KARPENTER_KEYS,
    NODE_GROUP_KEYS,
    SYSTEM_POOL,
    NodePoolSettings,
    StackSettings,
    zone_count,
)
from infra.settings.problems import Problem, problem, set_command

Check = Callable[[StackSettings], Iterator[Problem]]


@dataclass(frozen=True)
class CrossCheck:
    inputs: frozenset[str]
    run: Check


CROSS_CHECKS: list[CrossCheck] = []


def cross_check(*inputs: str) -> Callable[[Check], Check]:
    unknown = set(inputs) - set(StackSettings.model_fields)
    if unknown:
        raise TypeError(f"cross-check inputs {sorted(unknown)} are not StackSettings fields")

    def register(check: Check) -> Check:
        CROSS_CHECKS.append(CrossCheck(frozenset(inputs), check))
        return check

    return register


@cross_check("availability_zones", "az_count")
def _zone_count(settings: StackSettings) -> Iterator[Problem]:
    zones = settings.availability_zones
    if zones and len(zones) < 2:
        yield problem(f"{len(zones)} zone given; EKS needs subnets in at least 2",
                      "list two or more zones, e.g. [\"us-east-1a\", \"us-east-1b\"]", "availabilityZones")
    elif not zones and settings.az_count < 2:
        yield problem(f"{settings.az_count} zone; EKS needs subnets in at least 2", set_command("azCount", 2),
                      "azCount")


@cross_check("availability_zones", "region")
def _zone_names(settings: StackSettings) -> Iterator[Problem]:
    region = settings.region
    for index, zone in enumerate(settings.availability_zones):
        if not re.fullmatch(re.escape(region) + r"[a-z]", zone):
            yield problem(f"'{zone}' is not a zone of region {region}", f"use a zone such as {region}a",
                          f"availabilityZones[{index}]")
    if len(set(settings.availability_zones)) != len(settings.availability_zones):
        yield problem("lists a zone twice", "list each zone once", "availabilityZones")


@cross_check("vpc_cidr", "availability_zones", "az_count")
def _vpc_size(settings: StackSettings) -> Iterator[Problem]:
    vpc_cidr = settings.vpc_cidr
    zones = zone_count(settings.availability_zones, settings.az_count)
    prefix = addressing.subnet_prefix(vpc_cidr, zones)
    if prefix > addressing.MIN_SUBNET_PREFIX:
        widest = vpc_cidr.split("/")[1]
        needed = addressing.MIN_SUBNET_PREFIX - (prefix - int(widest))
        yield problem(
            f"{vpc_cidr} is too small for {zones} zone(s): each of its {2 * zones} subnets would be /{prefix}, "
            f"and pods need at least /{addressing.MIN_SUBNET_PREFIX}",
            f"use a /{needed} or larger, e.g. " + set_command("vpcCidr", f"10.0.0.0/{min(needed, 16)}"), "vpcCidr")


@cross_check("node_provisioner", "node_pools")
def _system_pool(settings: StackSettings) -> Iterator[Problem]:
    # With Karpenter, system pods have their own node group (systemPool).
    if settings.node_provisioner == "cluster-autoscaler" and not any(
            pool.always_has_nodes for pool in settings.node_pools.values()):
        yield problem(
            "no CPU pool (gpu: false) with minSize >= 1 to run system pods (CoreDNS, controllers, autoscaler)",
            set_command("nodePools.cpu.minSize", 2), "nodePools")


@cross_check("node_provisioner", "node_pools")
def _pools_fit_their_provisioner(settings: StackSettings) -> Iterator[Problem]:
    """Each pool carries the keys its provisioner reads, and none of the other's: a key that would be
    silently ignored is refused."""
    karpenter = settings.node_provisioner == "karpenter"
    for name, pool in settings.node_pools.items():
        path = f"nodePools.{name}"
        given = {to_camel(field) for field in pool.model_fields_set}  # config spelling
        foreign, reads = (NODE_GROUP_KEYS, "limits instead of sizes") if karpenter else (
            KARPENTER_KEYS, "minSize and maxSize")
        for key in sorted(given & set(foreign)):
            yield problem(f"is not read with nodeProvisioner {settings.node_provisioner} (its pools take {reads})",
                          f"pulumi config rm --path '{path}.{key}'" + (
                              f", and set --path '{path}.limits.cpu' to about maxSize x the vCPUs of one instance"
                              if key == "maxSize" else ""), f"{path}.{key}")
        if karpenter:
            if name == SYSTEM_POOL:
                yield problem(f"'{SYSTEM_POOL}' is the system node group's pool (systemPool) with Karpenter",
                              "rename the pool, e.g. nodePools.general", path)
            if pool.limits is None:
                yield problem("is required: a Karpenter pool grows until it reaches its limits",
                              set_command(f"{path}.limits.cpu", 16) + (
                                  f" and --path '{path}.limits.gpus' 2" if pool.gpu else ""), f"{path}.limits")
            if not pool.instance_types and not pool.instance_families and not pool.instance_categories:
                yield problem("needs instanceTypes, instanceFamilies or instanceCategories",
                              f"pulumi config set --path '{path}.instanceFamilies[0]' {'g6' if pool.gpu else 'm7i'}",
                              path)
            if pool.instance_types and pool.instance_families:
                yield problem("give instanceTypes or instanceFamilies, not both",
                              f"pulumi config rm --path '{path}.instanceTypes' (families let Karpenter pick the size)",
                              f"{path}.instanceFamilies")
            if pool.instance_categories:
                yield from _categories(path, pool)
            yield from _limits_hold_a_node(path, pool)
            if pool.limits is not None and pool.gpu and pool.limits.gpus is None:
                yield problem("is required on a GPU pool: its GPUs are what it costs",
                              set_command(f"{path}.limits.gpus", 2), f"{path}.limits.gpus")
            if pool.limits is not None and not pool.gpu and pool.limits.gpus is not None:
                yield problem("a CPU pool has no GPUs to limit", f"pulumi config rm --path '{path}.limits.gpus'",
                              f"{path}.limits.gpus")
        else:
            for key, value in (("instanceTypes", pool.instance_types), ("minSize", pool.min_size),
                               ("maxSize", pool.max_size)):
                if not value and value != 0:
                    yield problem("is required for a managed node group", set_command(f"{path}.{key}", "<value>"),
                                  f"{path}.{key}")


def _categories(path: str, pool: NodePoolSettings) -> Iterator[Problem]:
    key = f"{path}.instanceCategories"
    if pool.gpu:
        yield problem("a GPU pool takes GPU families (one accelerator model), not categories",
                      f"pulumi config rm --path '{key}'", key)
    elif pool.instance_types:
        yield problem("give instanceTypes or instanceCategories, not both",
                      f"pulumi config rm --path '{path}.instanceTypes' (categories let Karpenter pick the type)", key)
    outside = [f for f in pool.instance_families if instance_types.category(f) not in pool.instance_categories]
    if outside:
        yield problem(f"{', '.join(outside)} is outside instanceCategories ({', '.join(pool.instance_categories)}), "
                      "and Karpenter admits only families inside them: it would never launch",
                      f"add category {instance_types.category(outside[0])} or remove the family", key)


def _limits_hold_a_node(path: str, pool: NodePoolSettings) -> Iterator[Problem]:
    """Karpenter launches no node that would take its pool past a limit: limits smaller than every
    admitted instance type leave the pool empty and its pods pending forever."""
    limits = pool.limits
    admitted = instance_types.admitted(pool.instance_types, pool.instance_families, pool.instance_categories)
    if limits is None or not admitted:
        return  # the limits are reported missing above; types without figures fail the cost estimate
    figures = instance_types.FIGURES
    smallest = min(admitted, key=lambda t: (figures[t].gpus, figures[t].vcpu, figures[t].memory_gib, t))
    spec = figures[smallest]
    holds = f"the smallest instance type it admits, {smallest}, has {spec.vcpu} vCPUs, {spec.memory_gib}Gi " \
            f"memory" + (f" and {spec.gpus} GPU{'s' if spec.gpus > 1 else ''}" if spec.gpus else "")
    short: list[tuple[str, float, int, str]] = [("cpu", limits.cpu, spec.vcpu, str(spec.vcpu))]
    if limits.memory is not None:
        short.append(("memory", memory_bytes(limits.memory) / 2**30, spec.memory_gib, f"{spec.memory_gib}Gi"))
    if limits.gpus is not None and spec.gpus:
        short.append(("gpus", limits.gpus, spec.gpus, str(spec.gpus)))
    for key, limit, needed, fix in short:
        if limit < needed:
            given = getattr(limits, key)
            yield problem(f"{given} is less than one node, so Karpenter would launch nothing: {holds}",
                          set_command(f"{path}.limits.{key}", fix) + " or more (a multiple of it: the nodes it "
                          "may hold), or admit smaller types", f"{path}.limits.{key}")


@cross_check("node_provisioner", "system_node_group")
def _system_node_group_with_karpenter_only(settings: StackSettings) -> Iterator[Problem]:
    if settings.node_provisioner == "cluster-autoscaler" and settings.system_node_group.model_fields_set:
        yield problem("is read with nodeProvisioner karpenter only: with cluster-autoscaler, system pods run on "
                      "the CPU pool with minSize >= 1", "pulumi config rm systemPool", "systemPool")


@cross_check("environment", "endpoint_public_access_cidrs")
def _public_endpoint(settings: StackSettings) -> Iterator[Problem]:
    if settings.environment != "prod":
        return
    for index, cidr in enumerate(settings.endpoint_public_access_cidrs):
        if ipaddress.IPv4Network(cidr).prefixlen == 0:
            yield problem(f"{cidr} opens the prod Kubernetes API to the whole internet",
                          "list only your office, VPN or CI runner ranges, or [] for a private-only endpoint",
                          f"endpointPublicAccessCidrs[{index}]")


@cross_check("model_service", "node_pools")
def _model_placement(settings: StackSettings) -> Iterator[Problem]:
    model, node_pools = settings.model_service, settings.node_pools
    pool = node_pools.get(model.pool)
    if pool is None:
        yield problem(f"'{model.pool}' is not a node pool; pools: " + ", ".join(node_pools),
                      set_command("modelService.pool", next(iter(node_pools), "cpu")), "modelService.pool")
        return
    gpu_pools = [name for name, candidate in node_pools.items() if candidate.gpu]
    if model.gpus and not pool.gpu:
        where = f"use one of the GPU pools: {', '.join(gpu_pools)}" if gpu_pools else (
            "this stack has no GPU pool: add one to nodePools (gpu: true), or set gpus: 0")
        yield problem(f"{model.gpus} GPU(s) requested, but pool '{model.pool}' has no GPUs", where,
                      "modelService.gpus")
    if pool.gpu and not model.gpus:
        yield problem(f"0 GPUs requested on GPU pool '{model.pool}' "
                      "(its taint keeps CPU-only pods off, and it would waste the GPUs)",
                      set_command("modelService.gpus", 1) + " or move the model to a CPU pool", "modelService.gpus")


@cross_check("model_service", "node_pools")
def _model_artifact(settings: StackSettings) -> Iterator[Problem]:
    _, problems = artifact.inspect(settings.model_service.model, settings.model_service.format,
                                   settings.model_gpu_pool)
    yield from problems


@cross_check("model_service", "region")
def _certificate_region(settings: StackSettings) -> Iterator[Problem]:
    match = ACM_ARN_PATTERN.match(settings.model_service.certificate_arn or "")
    if match and match["region"] != settings.region:
        yield problem(f"the certificate is in {match['region']}, but a load balancer in {settings.region} "
                      "can only use certificates from its own region", f"request or import one in {settings.region}",
                      "modelService.certificateArn")


@cross_check("environment", "model_service")
def _prod_endpoint_encrypted(settings: StackSettings) -> Iterator[Problem]:
    model = settings.model_service
    if settings.environment == "prod" and model.scheme == "internet-facing" and not model.tls:
        yield problem("prod would serve the model over plain HTTP to the internet",
                      "pulumi config set --path 'modelService.domain' <name> with --path "
                      "'modelService.hostedZoneName' <zone> (or set certificateArn), or --path "
                      "'modelService.scheme' internal", "modelService")


@cross_check("model_service", "node_pools", "observability")
def _batch_wait_within_queue_objective(settings: StackSettings) -> Iterator[Problem]:
    # With little traffic every request waits the whole batch window: a window at or above the
    # queue-wait objective would fire ModelQueueWaitHigh every quiet hour.
    _, wait_ms = settings.model_service.batching(settings.model_device)
    observability = settings.observability
    if observability.enabled and wait_ms >= observability.queue_wait_slo_ms:
        yield problem(f"{wait_ms:g} ms is not below observability.queueWaitSloMs ({observability.queue_wait_slo_ms:g} "
                      "ms): with little traffic every request waits the whole window, and the queue-wait alert "
                      "would fire", f"lower it below {observability.queue_wait_slo_ms:g}, or raise "
                      f"observability.queueWaitSloMs above {wait_ms:g}", "modelService.maxBatchWaitMs")


@cross_check("model_service", "observability")
def _canary_is_judged(settings: StackSettings) -> Iterator[Problem]:
    # The analysis and the traffic triggers query the in-cluster Prometheus, which observability installs.
    if settings.model_service.canary.enabled and not settings.observability.enabled:
        yield problem("canary releases are judged by the in-cluster Prometheus, which observability.enabled: false "
                      "leaves out", "pulumi config set --path 'modelService.canary.enabled' false, or turn "
                      "observability back on", "modelService.canary.enabled")


@cross_check("environment", "model_service")
def _prod_keeps_two_pods(settings: StackSettings) -> Iterator[Problem]:
    model = settings.model_service
    if settings.environment == "prod" and model.min_replicas < 2:
        yield problem(f"{model.min_replicas} pod in prod: a node drain or a crash takes the endpoint down",
                      set_command("modelService.minReplicas", 2), "modelService.minReplicas")
