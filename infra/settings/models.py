"""The settings models: frozen, typed, camelCase keys as written in stack config.

Each model checks what only its own fields decide; checks across keys of the stack are
in checks.py.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from infra import addressing, instance_types
from infra.identity import StackIdentity
from infra.settings import artifact
from infra.settings.artifact import FORMATS, Device, ModelArtifact
from infra.settings.fields import (
    CertificateArn,
    CpuQuantity,
    Duration,
    DurationOrNever,
    EmailAddress,
    HostedZoneId,
    Hostname,
    InstanceCategoryName,
    InstanceFamilyName,
    InstanceTypeName,
    Ipv4Cidr,
    KubernetesVersion,
    LoadBalancerCidr,
    MemoryQuantity,
    ModelFile,
    ModelFormat,
    ModelName,
    PoolName,
    PrincipalArn,
    Region,
    RetentionDays,
    VpcCidr,
    cpu_cores,
    memory_bytes,
)
from infra.settings.problems import Invalid, Problem, problem, set_command
from infra.workload.contract import HIGHEST_LATENCY_BUCKET_S

# gp3 volumes take 1 to 65,536 GiB (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html).
GP3_MAX_GIB = 65536
# The system node group's pool label with Karpenter: no entry of nodePools may take it.
SYSTEM_POOL = "system"
# ACM takes a certificate's first domain name, its common name, of at most 64 octets; further
# names may be longer (https://docs.aws.amazon.com/acm/latest/APIReference/API_RequestCertificate.html).
ACM_COMMON_NAME_MAX = 64
# Batching when the operator sets none: the server's own defaults for the device (CPU_BATCH and
# GPU_BATCH in app/model_server/model.py; tests/infra/test_model_artifact.py holds them equal), given
# explicitly so the pod says what it runs with. On a CPU a batch costs about its rows, so nothing
# waits; a GPU's cost barely grows with rows, so requests wait a little to fill larger batches. The
# GPU figures are provisional: no GPU was at hand to measure them (bench/gpu_check.sh reports the
# figures that should replace them).
BATCH_DEFAULTS: dict[Device, tuple[int, float]] = {"cpu": (1024, 0.0), "cuda": (8192, 2.0)}  # rows, ms


class ConfigModel(BaseModel):
    """Frozen, no unknown keys, camelCase keys as written in stack config."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, validate_by_alias=True, validate_by_name=False
    )


def raise_if(problems: list[Problem]) -> None:
    if problems:
        raise Invalid(*problems)


# Keys of a pool that only one provisioner reads (config spelling): the other refuses them.
NODE_GROUP_KEYS = ("minSize", "maxSize", "desiredSize", "maxUnavailablePercentage")
KARPENTER_KEYS = ("instanceCategories", "instanceFamilies", "limits", "disruption")
# What Karpenter does to a pool's idle nodes, by kind: a CPU node is replaced in a minute, so it goes
# as soon as its pods fit elsewhere; a GPU node takes minutes to boot and load a model, so it goes
# only once empty, and after a longer wait (https://karpenter.sh/v1.14/concepts/disruption/).
CONSOLIDATION_DEFAULTS = {False: ("WhenEmptyOrUnderutilized", "5m"), True: ("WhenEmpty", "30m")}


class PoolLimits(ConfigModel):
    """The most a Karpenter pool may hold, summed over its nodes (NodePool spec.limits): Karpenter
    launches no further node once the pool's nodes reach any of them. They replace maxSize."""

    cpu: int = Field(ge=1, le=100_000, description="vCPUs: a node group's maxSize x the vCPUs of one of its "
                                                   "instances (maxSize 6 of m7i.large, 2 vCPUs each: 12).")
    memory: MemoryQuantity | None = Field(
        None, description="Memory, e.g. 96Gi: maxSize x the memory of one instance (m7i.large: 8Gi).")
    gpus: int | None = Field(None, ge=1, le=10_000, description="NVIDIA GPUs (nvidia.com/gpu), required on a GPU "
                                                               "pool: maxSize x the GPUs of one instance.")


class DisruptionSettings(ConfigModel):
    """How Karpenter takes a pool's nodes away: consolidation of idle nodes, replacement of old ones,
    and how many at once."""

    consolidation_policy: Literal["WhenEmptyOrUnderutilized", "WhenEmpty", "Balanced"] | None = Field(
        None, description="Which nodes consolidation removes; default WhenEmptyOrUnderutilized on CPU pools "
                          "(underused nodes too), WhenEmpty on GPU pools (only nodes without pods).")
    consolidate_after: Duration | None = Field(
        None, description="How long a node stays empty or underused before consolidation removes it; default 5m "
                          "on CPU pools, 30m on GPU pools (slow to start and to load a model).")
    budget_percent: int = Field(
        10, ge=1, le=100, description="Share of the pool's nodes (rounded up) that consolidation (empty or "
                                      "underutilized nodes) and drift (e.g. a new AMI alias) may disrupt at once. "
                                      "It does not hold back expiry (expireAfter): Karpenter v1 budgets cover only "
                                      "the Underutilized, Empty and Drifted reasons.")
    expire_after: DurationOrNever = Field(
        "720h", description="Age at which a node is replaced, or Never. Default 720h, Karpenter's own: no node "
                            "outlives a month of kernel and kubelet patches. Expiry is forced: no budget holds it "
                            "back, nodes launched together expire together, and after terminationGracePeriod their "
                            "pods are deleted whatever their PodDisruptionBudgets say. AMI updates come through "
                            "drift when the pinned alias changes, which budgets do cover; set Never to rely on "
                            "drift alone.")
    termination_grace_period: Duration = Field(
        "1h", description="How long a draining node waits for its pods (their PodDisruptionBudgets and "
                          "do-not-disrupt included) before it is terminated anyway, its pods deleted regardless.")


class NodePoolSettings(ConfigModel):
    """One workload pool: a Karpenter NodePool (nodeProvisioner karpenter) or an EKS managed node group
    (nodeProvisioner cluster-autoscaler). Pools are a map keyed by name, so adding one never renames another."""

    instance_types: list[InstanceTypeName] = Field(
        [], description="EC2 instance types, x86_64. Required for a managed node group; a Karpenter pool takes "
                        "these, or instanceFamilies and/or instanceCategories.")
    instance_families: list[InstanceFamilyName] = Field(
        [], description="Karpenter: EC2 instance families (m7i, c7i, g6...); Karpenter picks the size pending pods "
                        "need. Instead of instanceTypes.")
    instance_categories: list[InstanceCategoryName] = Field(
        [], description="Karpenter, CPU pools: EC2 instance categories (c, m, r...; the NodePool's "
                        "karpenter.k8s.aws/instance-category): alone, every x86_64 family of those categories; "
                        "with instanceFamilies, the families among them. Instead of instanceTypes.")
    gpu: bool = Field(False, description="NVIDIA GPU pool: GPU AMI, taint and accelerator label. Never guessed.")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field(
        "ON_DEMAND", description="How instances are bought; SPOT is cheaper but can be reclaimed. On a Karpenter pool "
                                 "SPOT falls back to on-demand when no spot capacity is offered.")
    min_size: int | None = Field(
        None, ge=0, le=1000, description="Managed node group: fewest nodes; 0 lets the autoscaler empty the pool.")
    max_size: int | None = Field(
        None, ge=1, le=1000, description="Managed node group: most nodes the autoscaler may start.")
    desired_size: int | None = Field(
        None, description="Managed node group: nodes at creation (default minSize); the autoscaler owns the count "
                          "afterwards.")
    disk_size_gib: int = Field(50, ge=20, le=GP3_MAX_GIB, description="Size in GiB of the encrypted gp3 root volume.")
    max_unavailable_percentage: int = Field(
        33, ge=1, le=100, description="Managed node group: nodes replaced at once on update.")
    limits: PoolLimits | None = Field(
        None, description="Karpenter, required: the most the pool holds (cpu, memory, gpus); replaces maxSize.")
    disruption: DisruptionSettings = Field(
        DisruptionSettings(), description="Karpenter: consolidation, expiry, termination grace and the disruption "
                                          "budget.")

    @model_validator(mode="after")
    def _consistent(self) -> NodePoolSettings:
        problems: list[Problem] = []
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            problems.append(problem(f"{self.max_size} is less than minSize {self.min_size}",
                                    f"raise maxSize to at least {self.min_size} or lower minSize", "maxSize"))
        elif self.desired_size is not None and self.min_size is not None and self.max_size is not None and \
                not self.min_size <= self.desired_size <= self.max_size:
            problems.append(problem(
                f"{self.desired_size} is outside [minSize {self.min_size}, maxSize {self.max_size}]",
                f"set desiredSize between {self.min_size} and {self.max_size}, or remove it", "desiredSize"))
        # Problems whose fix names the pool (instanceTypes beside instanceFamilies, GPU limits) are
        # reported by the cross-check that knows its name (infra/settings/checks.py).
        problems += self._accelerator_problems()
        raise_if(problems)
        return self

    def _accelerator_problems(self) -> list[Problem]:
        key, chosen = ("instanceFamilies", self.instance_families) if self.instance_families else (
            "instanceTypes", self.instance_types)
        without_gpu = [t for t in chosen if instance_types.accelerator(t) is None]
        with_gpu = [t for t in chosen if instance_types.accelerator(t) is not None]
        problems: list[Problem] = []
        if self.gpu and without_gpu:
            problems.append(problem(f"gpu is true but {', '.join(without_gpu)} has no NVIDIA GPU",
                                    "use GPU types such as g5.xlarge, g6.xlarge or g4dn.xlarge (or families g5, g6), "
                                    "or set gpu: false", key))
        if not self.gpu and with_gpu:
            problems.append(problem(f"{', '.join(with_gpu)} carries an NVIDIA GPU but gpu is false",
                                    "set gpu: true so the pool gets the GPU AMI and taint, or use CPU types", key))
        if self.gpu and not without_gpu and len({instance_types.accelerator(t) for t in with_gpu}) > 1:
            problems.append(problem(f"{', '.join(with_gpu)} mix GPU models; one pool carries one accelerator label",
                                    "split them into one pool per GPU model", key))
        return problems

    @property
    def initial_size(self) -> int:
        """A managed node group's nodes at creation (its sizes are validated present with cluster-autoscaler)."""
        assert self.min_size is not None
        return self.min_size if self.desired_size is None else self.desired_size

    @property
    def accelerator(self) -> str | None:
        chosen = self.instance_families or self.instance_types
        return instance_types.accelerator(chosen[0]) if self.gpu and chosen else None

    @property
    def always_has_nodes(self) -> bool:
        """A CPU node group that never scales to zero: where cluster add-ons and controllers run with
        cluster-autoscaler (a Karpenter pool can always empty)."""
        return not self.gpu and (self.min_size or 0) >= 1

    @property
    def consolidation_policy(self) -> str:
        return self.disruption.consolidation_policy or CONSOLIDATION_DEFAULTS[self.gpu][0]

    @property
    def consolidate_after(self) -> str:
        return self.disruption.consolidate_after or CONSOLIDATION_DEFAULTS[self.gpu][1]


class SystemPoolSettings(ConfigModel):
    """Karpenter stacks only: the managed node group Karpenter never manages, where the cluster's add-ons and
    controllers run, Karpenter's own included. On-demand, a fixed size, no autoscaler."""

    instance_types: list[InstanceTypeName] = Field(
        ["m7i.large"], min_length=1, description="EC2 instance types, x86_64 without GPUs.")
    size: int = Field(
        2, ge=2, le=100, description="Nodes, spread over the zones: at least 2, as Karpenter's two replicas never "
                                     "share a node.")
    disk_size_gib: int = Field(50, ge=20, le=GP3_MAX_GIB, description="Size in GiB of the encrypted gp3 root volume.")

    @model_validator(mode="after")
    def _consistent(self) -> SystemPoolSettings:
        with_gpu = [t for t in self.instance_types if instance_types.accelerator(t) is not None]
        if with_gpu:
            raise Invalid(problem(f"{', '.join(with_gpu)} carries an NVIDIA GPU, wasted on add-ons",
                                  "use CPU types: pulumi config set --path 'systemPool.instanceTypes[0]' m7i.large",
                                  "instanceTypes"))
        return self


class WafSettings(ConfigModel):
    """AWS WAF in front of the load balancer: AWS managed rules and a per-client rate limit."""

    enabled: bool = Field(False, description="Put a WAFv2 web ACL in front of the load balancer (recommended "
                                             "for prod).")
    requests_per_five_minutes: int = Field(
        2000, ge=10, le=2_000_000_000,
        description="Requests one client IP may send in five minutes before WAF blocks it.")


class CanaryStep(ConfigModel):
    """One step of a canary release: the canary's share of traffic, then a pause while it is judged."""

    weight: int = Field(ge=1, le=99, description="Share of requests (%) the canary gets from this step on.")
    pause_seconds: int = Field(ge=0, le=3600, description="How long it holds that share before the next step.")


class CanarySettings(ConfigModel):
    """Progressive delivery (Argo Rollouts): a new revision takes a growing share of traffic while the
    in-cluster Prometheus judges it, and is aborted, all traffic back on the stable pods, when it misbehaves."""

    enabled: bool = Field(True, description="Release every new revision as a canary; false: a plain rolling update.")
    steps: list[CanaryStep] = Field(
        [CanaryStep.model_validate({"weight": weight, "pauseSeconds": 120}) for weight in (10, 50)],
        min_length=1, max_length=10,
        description="Weights (%) and pauses, in order; after the last, the canary takes all traffic.")
    analysis_interval_seconds: int = Field(
        10, ge=5, le=300, description="How often the canary is measured, from the first step on.")
    failure_limit: int = Field(
        0, ge=0, le=10, description="Failed measurements tolerated before the release is aborted (0: the first).")
    max_error_ratio: float = Field(
        0.01, gt=0, lt=1, description="Share of the canary's requests it may answer with a 5xx.")
    max_refusal_increase: float = Field(
        0.05, gt=0, lt=1,
        description="How much larger a share of inference requests the canary may refuse (4xx) than the stable pods.")
    min_requests: int = Field(
        100, ge=0, le=1_000_000,
        description="Inference requests the canary must answer before it is promoted; fewer aborts the release "
                    "(0 promotes whatever the traffic).")
    release_timeout_minutes: int = Field(
        30, ge=5, le=240, description="How long `pulumi up` waits for the release before it fails.")
    adopt_deployment: bool = Field(
        False, description="Migration step 1 of a stack deployed before canaries: the Rollout starts beside the "
                           "Deployment, which keeps serving (README, Migrating to canary releases).")

    @model_validator(mode="after")
    def _consistent(self) -> CanarySettings:
        problems: list[Problem] = []
        for index, (before, after) in enumerate(zip(self.steps, self.steps[1:], strict=False), start=1):
            if after.weight <= before.weight:
                problems.append(problem(
                    f"weight {after.weight} is not above the previous step's {before.weight}",
                    f"give each step a larger share than the one before, e.g. pulumi config set --path "
                    f"'modelService.canary.steps[{index}].weight' {min(99, before.weight + 1)}",
                    f"steps[{index}].weight"))
        judged_minutes = self.judged_seconds / 60
        if self.release_timeout_minutes < judged_minutes + 5:
            problems.append(problem(
                f"{self.release_timeout_minutes} minutes is less than the steps' {judged_minutes:g} minutes of pauses "
                "plus 5 for the pods to start",
                set_command("modelService.canary.releaseTimeoutMinutes", math.ceil(judged_minutes + 5)),
                "releaseTimeoutMinutes"))
        raise_if(problems)
        return self

    @property
    def judged_seconds(self) -> int:
        """How long a canary is judged before it takes all traffic: the sum of its pauses."""
        return sum(step.pause_seconds for step in self.steps)


class ModelServiceSettings(ConfigModel):
    """The model-serving workload: how many replicas, where they run, what each may use."""

    name: ModelName = Field("iris", description="Model name in the URLs.")
    version: ModelName = Field("1", description="Model version served.")
    model: ModelFile = Field(
        artifact.DEFAULT_MODEL,
        description="The artifact to serve, a path under app/ pinned by the .sha256 file beside it, e.g. "
                    "examples/xgboost/model.ubj (README, Choosing the model and its pool).")
    format: ModelFormat | None = Field(
        None, description=f"The artifact's format ({', '.join(FORMATS)}); default: told from the file as the "
                          "server tells it (extension, header for .bst).")
    pool: str = Field("cpu", description="Node pool the pods run on (a key of nodePools).")
    gpus: int = Field(0, ge=0, le=8, description="NVIDIA GPUs per pod; more than 0 needs a GPU pool.")
    replicas: int = Field(2, ge=1, le=100, description="Pods at creation; the autoscaler owns the count afterwards.")
    min_replicas: int = Field(2, ge=1, le=100, description="Fewest pods the autoscaler keeps.")
    max_replicas: int = Field(6, ge=1, le=100, description="Most pods the autoscaler starts.")
    target_cpu_utilization: int = Field(
        70, ge=10, le=100, description="CPU use (% of request) the autoscaler aims at: a floor under the traffic "
                                       "triggers.")
    target_inflight_per_pod: int = Field(
        16, ge=1, le=1024, description="Requests in flight per pod the autoscaler aims at (its main trigger, with "
                                       "the queue-wait objective).")
    cpu_request: CpuQuantity = Field("1", description="CPU reserved per pod.")
    cpu_limit: CpuQuantity = Field("1", description="CPU cap per pod; sets the server's workers.")
    memory_request: MemoryQuantity = Field("512Mi", description="Memory reserved per pod.")
    memory_limit: MemoryQuantity = Field("1Gi", description="Memory cap per pod.")
    max_batch_size: int | None = Field(
        None, ge=1, le=65536,
        description="Most rows per predict call; default 1024 on a CPU pool, 8192 on a GPU pool (provisional until "
                    "bench/gpu_check.sh measures it).")
    max_batch_wait_ms: float | None = Field(
        None, ge=0, le=1000,
        description="How long a request may wait to share a batch, below observability.queueWaitSloMs; default 0 on "
                    "a CPU pool, 2 on a GPU pool (provisional).")
    prediction_log_sample_rate: float = Field(
        0.01, ge=0, le=1, description="Fraction of requests whose inputs and outputs go to the shared log volume.")
    certificate_arn: CertificateArn | None = Field(
        None, description="Your own ACM certificate for HTTPS (HTTP redirects to it); with a domain, the program "
                          "requests one itself.")
    domain: Hostname | None = Field(
        None, description="DNS name of the endpoint: the program requests its certificate (at most 64 characters, "
                          "ACM's limit) and points it at the load balancer. Needs hostedZoneId or hostedZoneName.")
    hosted_zone_id: HostedZoneId | None = Field(None, description="Route 53 public hosted zone holding domain, by ID.")
    hosted_zone_name: Hostname | None = Field(
        None, description="Route 53 public hosted zone holding domain, found by name (e.g. example.com).")
    scheme: Literal["internet-facing", "internal"] = Field(
        "internet-facing", description="internet-facing, or internal: reachable only from the VPC and its peers.")
    allowed_cidrs: list[LoadBalancerCidr] = Field(
        ["0.0.0.0/0"], min_length=1,
        description="Source ranges allowed to reach the load balancer (its security group), in CIDR notation.")
    waf: WafSettings = Field(WafSettings(), description="AWS WAF: enabled, requestsPerFiveMinutes.")
    canary: CanarySettings = Field(
        CanarySettings(), description="Canary releases: enabled, steps, analysis and its thresholds, the release "
                                      "timeout.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelServiceSettings:
        problems: list[Problem] = []
        if self.min_replicas > self.max_replicas:
            problems.append(problem(f"{self.min_replicas} is above maxReplicas {self.max_replicas}",
                                    f"lower minReplicas to at most {self.max_replicas} or raise maxReplicas",
                                    "minReplicas"))
        elif not self.min_replicas <= self.replicas <= self.max_replicas:
            problems.append(problem(
                f"{self.replicas} is outside [minReplicas {self.min_replicas}, maxReplicas {self.max_replicas}]",
                f"set replicas between {self.min_replicas} and {self.max_replicas}", "replicas"))
        if cpu_cores(self.cpu_limit) < cpu_cores(self.cpu_request):
            problems.append(problem(f"{self.cpu_limit} is below cpuRequest {self.cpu_request}",
                                    f"raise cpuLimit to at least {self.cpu_request} or lower cpuRequest", "cpuLimit"))
        if memory_bytes(self.memory_limit) < memory_bytes(self.memory_request):
            problems.append(problem(f"{self.memory_limit} is below memoryRequest {self.memory_request}",
                                    f"raise memoryLimit to at least {self.memory_request} or lower memoryRequest",
                                    "memoryLimit"))
        problems += self._dns_problems()
        raise_if(problems)
        return self

    def _dns_problems(self) -> list[Problem]:
        zone_given = self.hosted_zone_id is not None or self.hosted_zone_name is not None
        if self.hosted_zone_id is not None and self.hosted_zone_name is not None:
            return [problem("give the hosted zone once: by ID or by name, not both",
                            "pulumi config rm --path 'modelService.hostedZoneName'", "hostedZoneName")]
        if self.domain is None:
            return [problem("a hosted zone without a domain has nothing to serve",
                            "pulumi config set --path 'modelService.domain' <name in that zone>",
                            "hostedZoneId" if self.hosted_zone_id else "hostedZoneName")] if zone_given else []
        if not zone_given:
            return [problem(f"domain {self.domain} needs the Route 53 hosted zone that holds it",
                            "pulumi config set --path 'modelService.hostedZoneId' <Z...>, or --path "
                            "'modelService.hostedZoneName' <zone name>", "domain")]
        if self.certificate_arn is None and len(self.domain) > ACM_COMMON_NAME_MAX:
            return [problem(f"{self.domain} is {len(self.domain)} characters, and the certificate the program "
                            f"requests for it takes a name of at most {ACM_COMMON_NAME_MAX} (ACM's limit on a "
                            "certificate's common name)",
                            f"use a name of at most {ACM_COMMON_NAME_MAX} characters, or bring a certificate of "
                            "your own with --path 'modelService.certificateArn'", "domain")]
        zone = self.hosted_zone_name
        if zone is not None and not self.domain.endswith(f".{zone}") and self.domain != zone:
            return [problem(f"domain {self.domain} is not in hosted zone {zone}",
                            f"use a name ending in .{zone}, or the zone that holds {self.domain}", "domain")]
        return []

    @property
    def tls(self) -> bool:
        """HTTPS, with the program's certificate (domain) or the operator's (certificateArn)."""
        return self.domain is not None or self.certificate_arn is not None

    @property
    def workload_kind(self) -> str:
        """The controller that runs the pods: an Argo Rollout releases canaries, a Deployment rolls."""
        return "Rollout" if self.canary.enabled else "Deployment"

    @property
    def workers(self) -> int:
        """Server worker processes: one per whole CPU the pod may use."""
        return max(1, int(cpu_cores(self.cpu_limit)))

    def batching(self, device: Device) -> tuple[int, float]:
        """(most rows per predict call, ms a request may wait for company) on `device`."""
        default_size, default_wait_ms = BATCH_DEFAULTS[device]
        return (default_size if self.max_batch_size is None else self.max_batch_size,
                default_wait_ms if self.max_batch_wait_ms is None else self.max_batch_wait_ms)


class ObservabilitySettings(ConfigModel):
    """Metrics, alerts, dashboards and logs for the stack; off for teams that bring their own."""

    enabled: bool = Field(True, description="Install the observability stack (metrics, alerts, dashboards, logs).")
    prometheus_retention_days: int = Field(15, ge=1, le=365, description="Days Prometheus keeps metrics.")
    prometheus_storage_gib: int = Field(
        50, ge=10, le=GP3_MAX_GIB, description="Size of Prometheus's encrypted gp3 volume, GiB.")
    latency_slo_ms: float = Field(
        250, gt=0, description="p99 inference latency the endpoint should stay under (below 5000: the server's "
                               "histogram tops out at 5 s); alerts above it.")
    queue_wait_slo_ms: float = Field(
        50, gt=0, description="p99 time a request may wait for its batch (below 5000, as latencySloMs); alerts above "
                              "it.")
    alert_emails: list[EmailAddress] = Field(
        [], description="Addresses subscribed to the alert topic (each confirms by email), each listed once.")
    log_retention_days: RetentionDays = Field(30, description="Days CloudWatch keeps container logs.")
    access_log_retention_days: int = Field(
        90, ge=1, le=3650, description="Days the load balancer's access logs are kept in S3.")

    @model_validator(mode="after")
    def _consistent(self) -> ObservabilitySettings:
        problems: list[Problem] = []
        ceiling_ms = HIGHEST_LATENCY_BUCKET_S * 1000
        for key, slo_ms in (("latencySloMs", self.latency_slo_ms), ("queueWaitSloMs", self.queue_wait_slo_ms)):
            if slo_ms >= ceiling_ms:
                problems.append(problem(
                    f"{slo_ms:g} ms can never be seen as broken: the server's histogram tops out at {ceiling_ms:g} ms, "
                    "and a p99 computed from it never exceeds that",
                    f"set it below {ceiling_ms:g}, e.g. pulumi config set --path 'observability.{key}' "
                    f"{ceiling_ms / 2:g}", key))
        first_index: dict[str, int] = {}
        for index, email in enumerate(self.alert_emails):
            seen = first_index.setdefault(email.lower(), index)
            if seen != index:
                problems.append(problem(f"{email} is listed already, as alertEmails[{seen}]",
                                        f"pulumi config rm --path 'observability.alertEmails[{index}]'",
                                        f"alertEmails[{index}]"))
        raise_if(problems)
        return self


class StackSettings(ConfigModel):
    """Everything a stack's config says, validated. Field aliases are the config keys."""

    # Supplied by the Pulumi runtime, not by config (see loading.RUNTIME_FIELDS).
    project: str
    stack: str

    environment: Literal["dev", "staging", "prod"]
    region: Region
    availability_zones: list[str]
    az_count: int = Field(ge=1, le=6)
    vpc_cidr: VpcCidr
    nat_gateways: Literal["single", "perAz"]
    kubernetes_version: KubernetesVersion
    endpoint_public_access_cidrs: list[Ipv4Cidr]
    admin_principal_arns: list[PrincipalArn]
    control_plane_log_retention_days: RetentionDays
    node_provisioner: Literal["karpenter", "cluster-autoscaler"]
    node_pools: dict[PoolName, NodePoolSettings]
    # Its own name: `system_pool` is the name of the pool system pods run on, whichever provisioner.
    system_node_group: SystemPoolSettings = Field(alias="systemPool")
    ecr_keep_images: int = Field(ge=1, le=1000)
    retain_data_on_destroy: bool
    ecr_scanning: Literal["basic", "enhanced"]
    model_service: ModelServiceSettings
    observability: ObservabilitySettings

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
    def karpenter(self) -> bool:
        """Karpenter provisions the workload pools; the system pool is a managed node group of its own."""
        return self.node_provisioner == "karpenter"

    @property
    def system_pool(self) -> str:
        """The pool that always has nodes: cluster add-ons and controllers run there. With Karpenter, the
        system node group; with cluster-autoscaler, the first CPU node group that never scales to zero."""
        if self.karpenter:
            return SYSTEM_POOL
        return next(name for name, pool in self.node_pools.items() if pool.always_has_nodes)

    @property
    def model_gpu_pool(self) -> str | None:
        """The model's pool when it is a GPU pool (an unknown pool is reported by the checks)."""
        pool = self.node_pools.get(self.model_service.pool)
        return self.model_service.pool if pool is not None and pool.gpu else None

    @property
    def model_device(self) -> Device:
        """Where the model runs: the pool decides (its pods get MODEL_DEVICE, and the image to match)."""
        return "cpu" if self.model_gpu_pool is None else "cuda"

    @cached_property
    def model_artifact(self) -> ModelArtifact:
        """The artifact deployed (the checks have refused the stack if there is none to deploy)."""
        found, problems = artifact.inspect(self.model_service.model, self.model_service.format, self.model_gpu_pool)
        if found is None:
            raise Invalid(*problems)
        return found

    @property
    def has_gpu_pool(self) -> bool:
        return any(pool.gpu for pool in self.node_pools.values())

    @property
    def zone_count(self) -> int:
        return zone_count(self.availability_zones, self.az_count)

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

    @property
    def identity(self) -> StackIdentity:
        return StackIdentity(name=self.name, project=self.project, tags=self.tags, partition=self.partition,
                             region=self.region, production=self.production)


def zone_count(availability_zones: list[str], az_count: int) -> int:
    """Listed zones win; otherwise the first az_count zones of the region."""
    return len(availability_zones) or az_count
