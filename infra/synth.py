"""Offline synthesis: run the real __main__.py under Pulumi's mock runtime with a stack's real config.

No Pulumi CLI, cloud account or provider plugin is needed. Every resource the program
declares is recorded with its type, name, parent, inputs and options, plus the stack's
outputs. Tests assert on the record; `make plan` (infra/plan.py) prints a summary of it.

    python -m infra.synth dev            # the plan's summary, grouped by component
    python -m infra.synth dev --json     # the full record
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import runpy
import sys
from collections.abc import Awaitable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from infra.settings import PROJECT_DIR, StackConfigError, declared_keys, project_name

ACCOUNT_ID = "123456789012"
SECRET = "[secret]"
# pulumi_tls resources and the PEM output each computes.
MOCK_PEM_OUTPUTS = {
    "tls:index/privateKey:PrivateKey": "privateKeyPem",
    "tls:index/selfSignedCert:SelfSignedCert": "certPem",
    "tls:index/certRequest:CertRequest": "certRequestPem",
    "tls:index/locallySignedCert:LocallySignedCert": "certPem",
}


@dataclass
class ResourceRecord:
    type: str
    name: str
    urn: str
    id: str
    parent: str | None
    # A custom resource, or a remote component (helm.v4.Chart) that the provider expands:
    # either way something the deployment declares, not just a grouping of ours.
    custom: bool
    inputs: dict[str, Any]
    options: dict[str, Any]
    # input property → URNs of the resources its value came from
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def get(self, *path: str | int) -> Any:
        """The input at a path (`record.get("spec", "template", "spec")`), or None where it stops."""
        return value_at(self.inputs, *path)


def value_at(value: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


@dataclass
class Synthesis:
    project: str
    stack: str
    resources: list[ResourceRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> ResourceRecord:
        matches = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(matches) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in matches]}")
        return matches[0]

    def by_urn(self, urn: str) -> ResourceRecord:
        return next(r for r in self.resources if r.urn == urn)

    def component_of(self, record: ResourceRecord) -> ResourceRecord | None:
        """The outermost component a resource belongs to (None for top-level resources)."""
        outer: ResourceRecord | None = None
        current = record
        while current.parent is not None:
            current = self.by_urn(current.parent)
            outer = current
        return outer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Synthesis:
        document = json.loads(text)
        known = {f.name for f in fields(ResourceRecord)}
        # Records written by an older revision may lack newer fields.
        resources = [ResourceRecord(**{"id": "", **{k: v for k, v in record.items() if k in known}})
                     for record in document["resources"]]
        return cls(project=document["project"], stack=document["stack"], resources=resources,
                   outputs=document["outputs"])


# ---------------------------------------------------------------------------
# Stack config as the Pulumi CLI would hand it to the program
# ---------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects a key given twice (PyYAML would silently keep the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice (the second would silently win)", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _as_config_string(value: Any) -> str:
    """Pulumi passes scalars as strings and structured values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def stack_config(stack: str, overrides: Mapping[str, Any] | None = None,
                 project_dir: Path = PROJECT_DIR) -> tuple[dict[str, str], list[str]]:
    """Pulumi.yaml defaults + Pulumi.<stack>.yaml values (+ overrides, keyed without namespace),
    as strings. Secure values become placeholders; their keys are returned as secret."""
    project = project_name(project_dir / "Pulumi.yaml")
    values: dict[str, Any] = {
        f"{project}:{key}": declaration["default"]
        for key, declaration in declared_keys(project_dir / "Pulumi.yaml").items()
        if "default" in declaration
    }
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise FileNotFoundError(f"no stack file {stack_file.name}; stacks: "
                                + ", ".join(p.name[7:-5] for p in sorted(project_dir.glob("Pulumi.*.yaml"))))
    document = yaml.load(stack_file.read_text(), Loader=_UniqueKeyLoader) or {}
    values.update(document.get("config") or {})
    for key, value in (overrides or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if value is None:
            values.pop(full_key, None)
        else:
            values[full_key] = value
    secret_keys = [key for key, value in values.items() if isinstance(value, dict) and set(value) == {"secure"}]
    return ({key: SECRET if key in secret_keys else _as_config_string(value) for key, value in values.items()},
            secret_keys)


# ---------------------------------------------------------------------------
# Mocks: plausible provider outputs, and a monitor that records options
# ---------------------------------------------------------------------------


def _fake_id(type_: str, name: str) -> str:
    digest = hashlib.sha256(f"{type_}/{name}".encode()).hexdigest()[:17]
    prefixes = {"aws:ec2/vpc:Vpc": "vpc", "aws:ec2/subnet:Subnet": "subnet", "aws:ec2/routeTable:RouteTable": "rtb",
                "aws:ec2/natGateway:NatGateway": "nat", "aws:ec2/internetGateway:InternetGateway": "igw",
                "aws:ec2/eip:Eip": "eipalloc", "aws:ec2/launchTemplate:LaunchTemplate": "lt",
                "aws:ec2/securityGroup:SecurityGroup": "sg", "aws:efs/fileSystem:FileSystem": "fs"}
    return f"{prefixes.get(type_, name)}-{digest}"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str) -> None:
        self.region = region

    def computed_outputs(self, args: pulumi.runtime.MockResourceArgs, resource_id: str) -> dict[str, Any]:
        """What the provider would report back for outputs the program reads."""
        inputs = args.inputs
        name = inputs.get("name") or f"{args.name}-{resource_id[-7:]}"
        service = args.typ.split(":")[1].split("/")[0]
        outputs: dict[str, Any] = {
            "name": name,
            "arn": f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{args.name}",
        }
        if args.typ == "aws:eks/cluster:Cluster":
            outputs.update(
                endpoint=f"https://{hashlib.md5(name.encode()).hexdigest().upper()}.gr7.{self.region}.eks.amazonaws.com",
                certificateAuthority={"data": base64.b64encode(b"mock certificate authority").decode()},
                arn=f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:cluster/{name}",
            )
        elif args.typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        elif args.typ == "aws:ecr/repository:Repository":
            outputs["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{name}"
            outputs["registryId"] = ACCOUNT_ID
        elif args.typ == "aws:kms/key:Key":
            outputs["keyId"] = resource_id
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs["latestVersion"] = 1
        elif args.typ == "aws:eks/nodeGroup:NodeGroup":
            outputs["nodeGroupName"] = inputs.get("nodeGroupName") or name
        elif args.typ == "aws:eks/accessEntry:AccessEntry":
            outputs["principalArn"] = inputs["principalArn"]
        elif args.typ == "aws:cloudwatch/logGroup:LogGroup":
            outputs["arn"] = f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{name}"
        elif args.typ == "aws:sns/topic:Topic":
            outputs["arn"] = f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{name}"
        elif args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "mock-password-" + resource_id[-12:]
        elif args.typ == "aws:s3/bucket:Bucket":
            outputs["bucket"] = inputs.get("bucket", name)
            outputs["arn"] = f"arn:aws:s3:::{outputs['bucket']}"
        elif args.typ in MOCK_PEM_OUTPUTS:
            # Stable per resource, so renders of a chart that embeds them are stable too.
            outputs[MOCK_PEM_OUTPUTS[args.typ]] = f"-----BEGIN MOCK-----\n{args.typ} {args.name}\n-----END MOCK-----\n"
        elif args.typ == "docker:index/image:Image":
            repository = str(inputs["imageName"]).rsplit(":", 1)[0]
            digest = hashlib.sha256(str(inputs["imageName"]).encode()).hexdigest()
            outputs["repoDigest"] = f"{repository}@sha256:{digest}"
        elif args.typ == "aws:acm/certificate:Certificate":
            certificate_id = f"{resource_id[-8:]}-0000-4000-8000-{resource_id[-12:]}"
            outputs["arn"] = f"arn:aws:acm:{self.region}:{ACCOUNT_ID}:certificate/{certificate_id}"
            outputs["domainValidationOptions"] = [{
                "domainName": inputs["domainName"], "resourceRecordType": "CNAME",
                "resourceRecordName": f"_{resource_id[-8:]}.{inputs['domainName']}.",
                "resourceRecordValue": f"_{resource_id[-10:]}.acm-validations.aws."}]
        elif args.typ == "aws:route53/record:Record":
            outputs["fqdn"] = str(inputs["name"]).rstrip(".")
        elif args.typ == "kubernetes:networking.k8s.io/v1:Ingress":
            outputs["status"] = {"loadBalancer": {"ingress": [
                {"hostname": f"k8s-{args.name}-{resource_id[-10:]}.{self.region}.elb.amazonaws.com"}]}}
        return outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = _fake_id(args.typ, args.name)
        return resource_id, {**self.computed_outputs(args, resource_id), **args.inputs}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        results: dict[str, dict[str, Any]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{self.region}{letter}" for letter in "abcdef"],
                "zoneIds": [f"use1-az{i}" for i in range(1, 7)],
                "id": self.region,
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deployer/ci-session",
                "userId": "AROAEXAMPLE:ci-session",
                "id": ACCOUNT_ID,
            },
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "userName": "AWS", "password": "mock-registry-password", "authorizationToken": "bW9jaw==",
                "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com",
                "expiresAt": "2026-12-01T00:00:00Z", "id": ACCOUNT_ID,
            },
            "aws:route53/getZone:getZone": {
                "name": args.args.get("name"), "zoneId": "Z0MOCKZONE0000000000", "id": "Z0MOCKZONE0000000000",
                "privateZone": False},
            # The canonical hosted zone of eu-west-1's application load balancers (AWS publishes one per region).
            "aws:lb/getHostedZoneId:getHostedZoneId": {"id": "Z32O12XQLNTSW2"},
            # The account Elastic Load Balancing writes access logs as (eu-west-1's, from AWS's table).
            "aws:elb/getServiceAccount:getServiceAccount": {"arn": "arn:aws:iam::156460612806:root",
                                                            "id": "156460612806"},
            "aws:iam/getSessionContext:getSessionContext": {
                "arn": args.args.get("arn"),
                "issuerArn": f"arn:aws:iam::{ACCOUNT_ID}:role/deployer",
                "issuerId": "AROAEXAMPLE",
                "issuerName": "deployer",
                "sessionName": "ci-session",
                "id": args.args.get("arn"),
            },
        }
        if args.token not in results:
            raise NotImplementedError(f"offline synthesis has no mock for invoke {args.token}")
        return results[args.token]


def _provider_name(reference: str) -> str | None:
    """'urn:...::name::id' → name; None when the default provider would be used."""
    return reference.split("::")[-2] if reference else None


def _plain(value: Any) -> Any:
    """Inputs as the program wrote them, from the wire format read as plain JSON (the SDK's own
    deserializer would mark a whole map secret when one value in it is): each secret value
    redacted where it sits, output values unwrapped, and whole numbers back to int (the wire
    format carries every number as a float)."""
    if isinstance(value, dict):
        signature = value.get(rpc._special_sig_key)
        if signature == rpc._special_secret_sig:
            return SECRET
        if signature == rpc._special_output_value_sig:
            return SECRET if value.get("secret") else _plain(value.get("value"))
        # An input set to None is not set (the SDK's deserializer drops it too).
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records each registration with the options the engine sees (protect, ignoreChanges,
    provider...), which the Mocks API does not pass to new_resource."""

    def __init__(self, mocks: RecordingMocks, synthesis: Synthesis) -> None:
        super().__init__(mocks)
        self.synthesis = synthesis

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _plain({key: item for key, item in json_format.MessageToDict(request.object).items()
                             if not key.startswith("__")})
            stack_urn_prefix = "urn:pulumi:"
            parent = request.parent if request.parent and "pulumi:pulumi:Stack::" not in request.parent else None
            self.synthesis.resources.append(ResourceRecord(
                type=request.type,
                name=request.name,
                urn=response.urn,
                id=response.id,
                parent=parent if parent and parent.startswith(stack_urn_prefix) else None,
                custom=bool(request.custom or request.remote),
                inputs=inputs,
                options={
                    "protect": bool(request.protect),
                    "ignoreChanges": list(request.ignoreChanges),
                    "provider": _provider_name(request.provider),
                    "providers": {pkg: _provider_name(ref) for pkg, ref in request.providers.items()},
                    "dependencies": sorted(request.dependencies),
                    "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                    "retainOnDelete": bool(request.retainOnDelete),
                    "replaceOnChanges": list(request.replaceOnChanges),
                },
                property_dependencies={key: sorted(value.urns) for key, value in request.propertyDependencies.items()},
            ))
        return response


# ---------------------------------------------------------------------------
# Running the program
# ---------------------------------------------------------------------------


async def _resolve_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for name, value in outputs.items():
        output = pulumi.Output.from_input(value)
        resolved[name] = SECRET if await output.is_secret() else await output.future()
    return resolved


def synthesize(stack: str, overrides: Mapping[str, Any] | None = None,
               project_dir: Path = PROJECT_DIR) -> Synthesis:
    """Run __main__.py for `stack` under mocks and return what it declared.

    `overrides` replace stack-file values (key without namespace → value; None removes the key).
    """
    config, secret_keys = stack_config(stack, overrides, project_dir)
    project = project_name(project_dir / "Pulumi.yaml")
    synthesis = Synthesis(project=project, stack=stack)
    # Pulumi's runtime drives its work on the thread's current event loop; an earlier
    # asyncio.run() in this thread leaves none behind.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RecordingMocks(region=config.get(f"{project}:region", "us-east-1"))
    monitor = RecordingMonitor(mocks, synthesis)
    # A fresh root stack: set_mocks keeps the previous one, and with it the exports of a previous
    # synthesis in this process (found when a stack without some outputs showed them anyway).
    pulumi.runtime.reset_options(project=project, stack=stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]  # waits for every registration to finish
    def run() -> pulumi.Output[None]:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        outputs: Awaitable[dict[str, Any]] = asyncio.ensure_future(_resolve_outputs(getattr(root, "outputs", {})))
        resolved: pulumi.Output[dict[str, Any]] = pulumi.Output.from_input(outputs)
        return resolved.apply(synthesis.outputs.update)

    sys.path.insert(0, str(project_dir))
    try:
        run()
    finally:
        sys.path.remove(str(project_dir))
    # Registrations arrive in whatever order the program's outputs resolve; sort for stable output.
    synthesis.resources.sort(key=lambda record: record.urn)
    return synthesis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="stack name (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="print the full record as JSON")
    options = parser.parse_args(argv)
    try:
        synthesis = synthesize(options.stack)
    except (StackConfigError, FileNotFoundError, yaml.YAMLError) as error:
        print(error, file=sys.stderr)
        return 2
    if options.json:
        print(synthesis.to_json())
    else:
        from infra.plan import summary  # the reviewer's view lives with the plan

        print(summary(synthesis))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
