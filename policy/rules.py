"""The policy rules as plain functions over a resource's type and properties.

`policy/__main__.py` runs them inside `pulumi preview --policy-pack policy`; the tests run
them against the offline synthesis of every stack. A value not known yet (a preview of a
resource that does not exist) is skipped, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

REQUIRED_TAGS = ("project", "stack", "managed-by")
# AWS resource types that take no tags (their parents carry them).
UNTAGGABLE = {
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration",
    "aws:efs/mountTarget:MountTarget", "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
    "aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:kms/alias:Alias", "aws:route53/record:Record", "aws:acm/certificateValidation:CertificateValidation",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:sns/topicSubscription:TopicSubscription",
    # A tag itself, a queue's policy, an EventBridge rule's target.
    "aws:ec2/tag:Tag", "aws:sqs/queuePolicy:QueuePolicy", "aws:cloudwatch/eventTarget:EventTarget",
}
# Karpenter's node template (its nodes are launched by Karpenter, not by a node group).
EC2_NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
STATEFUL = {"aws:ecr/repository:Repository", "aws:kms/key:Key", "aws:efs/fileSystem:FileSystem"}
CONTROL_PLANE_LOGS = {"api", "audit", "authenticator"}
# The model server's namespace (its NAMESPACE in infra/): the workload held to "restricted".
MODEL_NAMESPACE = "model-serving"
# Everything that runs pods, whether the program declares it or a helm.v4.Chart renders it
# (`pulumi preview` shows a chart's objects as resources of these types).
WORKLOAD_TYPES = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet", "kubernetes:apps/v1:StatefulSet",
                  "kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob",
                  # Argo Rollouts' workload: its pod template sits where a Deployment's does.
                  "kubernetes:argoproj.io/v1alpha1:Rollout"}
# The kinds that run the model server's pods: a Deployment, or an Argo Rollout releasing canaries.
MODEL_WORKLOAD_TYPES = ("kubernetes:apps/v1:Deployment", "kubernetes:argoproj.io/v1alpha1:Rollout")
# Containers allowed to run privileged, as (namespace, workload, container), each with its reason.
# None is needed today: the NVIDIA device plugin only needs its hostPath socket directory, and the
# chart's privileged MPS control daemon is not installed (infra/platform/gpu.py).
PRIVILEGED_ALLOWED: dict[tuple[str, str, str], str] = {}


@dataclass
class Resource:
    """What a rule sees of a resource, whether it comes from Pulumi's policy engine or our synthesis."""

    type: str
    name: str
    props: dict[str, Any]
    protect: bool = False
    property_dependencies: dict[str, list[Resource]] = field(default_factory=dict)

    def get(self, *path: str | int) -> Any:
        # The twin of review.records.value_at: the pack runs alone in the venv Pulumi makes for it
        # (policy/requirements.txt), so it cannot import the project's packages. One table of cases
        # holds both to the same answers (tests/policy/test_path_lookup.py).
        value: Any = self.props
        for key in path:
            if isinstance(key, int):
                value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
            else:
                value = value.get(key) if isinstance(value, dict) else None
        return value

    @property
    def tags(self) -> dict[str, Any]:
        tags = self.props.get("tags")
        return tags if isinstance(tags, dict) else {}

    @property
    def production(self) -> bool:
        return self.tags.get("environment") == "prod"


Check = Callable[[Resource], Iterator[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    applies_to: Callable[[str], bool]
    check: Check

    def violations(self, resource: Resource) -> list[str]:
        return list(self.check(resource)) if self.applies_to(resource.type) else []


def of_type(*types: str) -> Callable[[str], bool]:
    return lambda type_: type_ in types


def ecr_immutable(resource: Resource) -> Iterator[str]:
    if resource.get("imageTagMutability") != "IMMUTABLE":
        yield "image tags must be immutable (imageTagMutability: IMMUTABLE)"


def ecr_registry_scanning(resource: Resource) -> Iterator[str]:
    rules = resource.get("rules")
    if rules is None:
        return  # not known yet in a preview
    if not any(rule.get("scanFrequency") in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN") for rule in rules):
        yield "the registry must scan images on push or continuously (rules[].scanFrequency)"


def eks_secrets_encryption(resource: Resource) -> Iterator[str]:
    config = resource.get("encryptionConfig")
    if not isinstance(config, dict) or "secrets" not in (config.get("resources") or []):
        yield "Kubernetes secrets must be envelope-encrypted with KMS (encryptionConfig.resources: [secrets])"


def eks_control_plane_logging(resource: Resource) -> Iterator[str]:
    missing = CONTROL_PLANE_LOGS - set(resource.get("enabledClusterLogTypes") or [])
    if missing:
        yield f"control-plane logs {', '.join(sorted(missing))} must be enabled (enabledClusterLogTypes)"


def eks_public_endpoint(resource: Resource) -> Iterator[str]:
    if not resource.production or resource.get("vpcConfig", "endpointPublicAccess") is False:
        return
    cidrs = resource.get("vpcConfig", "publicAccessCidrs")
    # A public endpoint without CIDRs is open to 0.0.0.0/0 (the EKS default).
    if cidrs is None or "0.0.0.0/0" in cidrs:
        yield "the prod Kubernetes API must not be open to the internet (vpcConfig.publicAccessCidrs)"


def nodes_private_and_imdsv2(resource: Resource) -> Iterator[str]:
    if resource.type in ("aws:ec2/launchTemplate:LaunchTemplate", EC2_NODE_CLASS):
        options = (resource.get("spec", "metadataOptions") if resource.type == EC2_NODE_CLASS
                   else resource.get("metadataOptions")) or {}
        if options.get("httpTokens") != "required":
            yield "nodes must require IMDSv2 (metadataOptions.httpTokens: required)"
        if options.get("httpPutResponseHopLimit") != 1:
            yield "pods must not reach node credentials (metadataOptions.httpPutResponseHopLimit: 1)"
        return
    if not resource.get("launchTemplate"):
        yield "node groups must use a launch template that requires IMDSv2"
    for subnet in resource.property_dependencies.get("subnetIds", []):
        if subnet.tags.get("kubernetes.io/role/elb") or subnet.props.get("mapPublicIpOnLaunch"):
            yield f"nodes must run in private subnets only; {subnet.name} is public"


def pod_spec(resource: Resource) -> dict[str, Any]:
    spec = resource.get("spec", "template", "spec") or resource.get("spec", "jobTemplate", "spec", "template", "spec")
    return spec if isinstance(spec, dict) else {}


def containers(resource: Resource) -> list[dict[str, Any]]:
    pod = pod_spec(resource)
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def workload_restricted(resource: Resource) -> Iterator[str]:
    if resource.get("metadata", "namespace") != MODEL_NAMESPACE:
        return  # cluster add-ons in kube-system are held to the rules below, not to "restricted"
    pod = pod_spec(resource)
    pod_security = pod.get("securityContext") or {}
    for container in containers(resource):  # init containers too, as Pod Security admission checks them
        name = container.get("name", "?")
        security = {**pod_security, **(container.get("securityContext") or {})}
        if security.get("runAsNonRoot") is not True:
            yield f"container {name}: runAsNonRoot must be true"
        if security.get("allowPrivilegeEscalation") is not False:
            yield f"container {name}: allowPrivilegeEscalation must be false"
        if (security.get("capabilities") or {}).get("drop") != ["ALL"]:
            yield f"container {name}: capabilities must drop ALL"
        if (security.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            yield f"container {name}: seccompProfile must be RuntimeDefault or Localhost"
        if security.get("readOnlyRootFilesystem") is not True:
            yield f"container {name}: readOnlyRootFilesystem must be true"
        limits = (container.get("resources") or {}).get("limits") or {}
        if not {"cpu", "memory"} <= set(limits):
            yield f"container {name}: cpu and memory limits are required"
        image = container.get("image")
        if isinstance(image, str) and "@sha256:" not in image:
            yield f"container {name}: the image must be pinned by digest (repository@sha256:...), got {image}"
    if any(volume.get("hostPath") for volume in pod.get("volumes") or []):
        yield "hostPath volumes are not allowed"


def containers_request_resources(resource: Resource) -> Iterator[str]:
    for container in containers(resource):
        requests = (container.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            yield (f"container {container.get('name', '?')}: cpu and memory requests are required "
                   "(without them the pod is BestEffort, evicted first)")


def no_unlisted_privileged_containers(resource: Resource) -> Iterator[str]:
    namespace, workload = resource.get("metadata", "namespace") or "default", resource.get("metadata", "name")
    for container in containers(resource):
        name = container.get("name", "?")
        if (container.get("securityContext") or {}).get("privileged") and (
                namespace, workload, name) not in PRIVILEGED_ALLOWED:
            yield f"container {name} of {namespace}/{workload} is privileged and not in PRIVILEGED_ALLOWED"


def stateful_protected_in_prod(resource: Resource) -> Iterator[str]:
    if resource.production and not resource.protect:
        yield "stateful resources must be protected in prod (protect=True)"


def required_tags(resource: Resource) -> Iterator[str]:
    tags = resource.props.get("tags")
    if tags is None or isinstance(tags, dict):
        missing = [tag for tag in REQUIRED_TAGS if tag not in (tags or {})]
        if missing:
            yield f"missing tags: {', '.join(missing)}"


RULES: list[Rule] = [
    Rule("ecr-immutable-tags", "ECR repositories never move a tag",
         of_type("aws:ecr/repository:Repository"), ecr_immutable),
    Rule("ecr-registry-scanning", "The registry scans images on push or continuously",
         of_type("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"), ecr_registry_scanning),
    Rule("eks-secrets-encryption", "EKS encrypts Kubernetes secrets with KMS",
         of_type("aws:eks/cluster:Cluster"), eks_secrets_encryption),
    Rule("eks-control-plane-logging", "EKS ships api, audit and authenticator logs",
         of_type("aws:eks/cluster:Cluster"), eks_control_plane_logging),
    Rule("eks-no-open-endpoint-in-prod", "The prod Kubernetes API is not open to the internet",
         of_type("aws:eks/cluster:Cluster"), eks_public_endpoint),
    Rule("nodes-private-imdsv2", "Nodes run in private subnets and require IMDSv2 with one hop",
         of_type("aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate", EC2_NODE_CLASS),
         nodes_private_and_imdsv2),
    Rule("workload-restricted", "The model workload meets Pod Security Standards restricted, has limits, "
         "and pins its image by digest", of_type(*MODEL_WORKLOAD_TYPES), workload_restricted),
    Rule("containers-request-resources", "Every container, the program's or a chart's, requests CPU and memory",
         lambda type_: type_ in WORKLOAD_TYPES, containers_request_resources),
    Rule("no-unlisted-privileged-containers", "No privileged container outside the commented allow-list",
         lambda type_: type_ in WORKLOAD_TYPES, no_unlisted_privileged_containers),
    Rule("stateful-protected-in-prod", "ECR repositories, KMS keys and EFS file systems are protected in prod",
         lambda type_: type_ in STATEFUL, stateful_protected_in_prod),
    Rule("required-tags", "AWS resources carry project, stack and managed-by tags",
         lambda type_: type_.startswith("aws:") and type_ not in UNTAGGABLE, required_tags),
]
