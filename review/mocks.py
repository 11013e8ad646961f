"""Pulumi's mock runtime, made to record: plausible provider outputs for what the program reads,
and a monitor that records each registration with the options the engine sees."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from review.records import ResourceRecord, Synthesis
from review.stack_files import SECRET

ACCOUNT_ID = "123456789012"
# pulumi_tls resources and the PEM output each computes.
MOCK_PEM_OUTPUTS = {
    "tls:index/privateKey:PrivateKey": "privateKeyPem",
    "tls:index/selfSignedCert:SelfSignedCert": "certPem",
    "tls:index/certRequest:CertRequest": "certRequestPem",
    "tls:index/locallySignedCert:LocallySignedCert": "certPem",
}


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
