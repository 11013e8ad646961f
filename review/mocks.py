"""Pulumi's mock runtime, made to record: plausible provider outputs for what the program reads,
and a monitor that records each registration with the options the engine sees."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from review.records import ResourceRecord, Synthesis
from review.stack_files import SECRET

ACCOUNT_ID = "123456789012"
# What AWS publishes per region, so a stack is checked against its own region's value and a lookup
# through the wrong region shows. The account Elastic Load Balancing writes access logs as:
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/enable-access-logging.html
# (regions opened since August 2022 name a service principal instead and have no account).
ELB_LOG_DELIVERY_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-south-1": "718504428378", "ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-southeast-3": "589379963580", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-west-3": "009996457667",
    "eu-south-1": "635631232127", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
# The canonical hosted zone of a region's application load balancers, which an alias record names:
# https://docs.aws.amazon.com/general/latest/gr/elb.html
ALB_HOSTED_ZONES = {
    "us-east-1": "Z35SXDOTRQ7X7K", "us-east-2": "Z3AADJGX6KTTL2", "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5", "ca-central-1": "ZQSVJUPU6J1EY", "ap-south-1": "ZP97RAFLXTNZK",
    "ap-northeast-1": "Z14GRHDCWA56QT", "ap-northeast-2": "ZWKZPGTI48KDX", "ap-northeast-3": "Z5LXEXXYW11ES",
    "ap-southeast-1": "Z1LMS91P8CMLE5", "ap-southeast-2": "Z1GM3OXH4ZPM65", "eu-central-1": "Z215JYRZR1TBD5",
    "eu-west-1": "Z32O12XQLNTSW2", "eu-west-2": "ZHURV8PSTC4K8", "eu-west-3": "Z3Q77PNBQS71R4",
    "eu-north-1": "Z23TAZ6LKFMNIO", "sa-east-1": "Z2P70J7HTTTPLU",
}
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


def hosted_zone_id(name: str) -> str:
    """The mock's public hosted zone for a domain name: each name its own, so a test can tell
    which name a record's zone was looked up by."""
    return "Z" + hashlib.sha256(name.rstrip(".").encode()).hexdigest()[:20].upper()


def _regional(table: dict[str, str], region: str, what: str) -> str:
    if region not in table:
        raise NotImplementedError(f"offline synthesis does not know {what} in {region}: add it to review/mocks.py "
                                  "from AWS's published table")
    return table[region]


def _zone_id_prefix(region: str) -> str:
    """AWS's zone IDs are named after the region: us-west-2 → usw2 (usw2-az1, usw2-az2...)."""
    area, *words, number = region.split("-")
    return area + "".join(word[0] for word in words) + number


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
                # The security group EKS makes for the cluster (joins the vpcConfig the program gave).
                vpcConfig={"clusterSecurityGroupId": _fake_id("aws:ec2/securityGroup:SecurityGroup", f"{name}-eks")},
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
        elif args.typ == "aws:sqs/queue:Queue":
            outputs["arn"] = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
            outputs["url"] = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"
        elif args.typ == "aws:cloudwatch/eventRule:EventRule":
            outputs["arn"] = f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{name}"
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

    def outputs_of(self, record: ResourceRecord) -> dict[str, Any]:
        """The outputs this mock reported for a recorded resource (the synthesis records inputs only):
        what a test compares another resource's input with, to know which resource it came from."""
        return self.new_resource(pulumi.runtime.MockResourceArgs(record.type, record.name, record.inputs))[1]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = _fake_id(args.typ, args.name)
        computed = self.computed_outputs(args, resource_id)
        # A computed field inside an input object (vpcConfig.clusterSecurityGroupId) joins that object.
        nested = {key: {**args.inputs[key], **value} for key, value in computed.items()
                  if isinstance(value, dict) and isinstance(args.inputs.get(key), dict)}
        return resource_id, {**computed, **args.inputs, **nested}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        """What a lookup answers; in the region of the stack (the program's AWS provider is in it)."""
        token, lookup = args.token, args.args
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": [f"{self.region}{letter}" for letter in "abcdef"],
                    "zoneIds": [f"{_zone_id_prefix(self.region)}-az{i}" for i in range(1, 7)], "id": self.region}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deployer/ci-session",
                    "userId": "AROAEXAMPLE:ci-session", "id": ACCOUNT_ID}
        if token == "aws:iam/getSessionContext:getSessionContext":
            return {"arn": lookup.get("arn"), "issuerArn": f"arn:aws:iam::{ACCOUNT_ID}:role/deployer",
                    "issuerId": "AROAEXAMPLE", "issuerName": "deployer", "sessionName": "ci-session",
                    "id": lookup.get("arn")}
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "mock-registry-password", "authorizationToken": "bW9jaw==",
                    "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com",
                    "expiresAt": "2026-12-01T00:00:00Z", "id": ACCOUNT_ID}
        if token == "aws:route53/getZone:getZone":
            zone = hosted_zone_id(str(lookup.get("name")))
            return {"name": lookup.get("name"), "zoneId": zone, "id": zone,
                    "privateZone": bool(lookup.get("privateZone"))}
        if token == "aws:lb/getHostedZoneId:getHostedZoneId":
            if lookup.get("loadBalancerType", "application") != "application":
                raise NotImplementedError("offline synthesis knows the hosted zones of application load balancers only")
            return {"id": _regional(ALB_HOSTED_ZONES, self.region, "the hosted zone of application load balancers")}
        if token == "aws:elb/getServiceAccount:getServiceAccount":
            account = _regional(ELB_LOG_DELIVERY_ACCOUNTS, self.region, "Elastic Load Balancing's log-delivery account")
            return {"arn": f"arn:aws:iam::{account}:root", "id": account}
        raise NotImplementedError(f"offline synthesis has no mock for invoke {token}")


def _provider_name(reference: str) -> str | None:
    """'urn:...::name::id' → name; None when the default provider would be used."""
    return reference.split("::")[-2] if reference else None


def _redacted(value: Any) -> Any:
    """A secret's shape without its values: a map made secret keeps its keys (which a Secret's
    reader names), every value in it is redacted."""
    if isinstance(value, dict) and rpc._special_sig_key not in value:
        return {key: _redacted(item) for key, item in value.items() if item is not None}
    return SECRET


def _plain(value: Any) -> Any:
    """Inputs as the program wrote them, from the wire format read as plain JSON (the SDK's own
    deserializer would mark a whole map secret when one value in it is): each secret value
    redacted where it sits, output values unwrapped, and whole numbers back to int (the wire
    format carries every number as a float)."""
    if isinstance(value, dict):
        signature = value.get(rpc._special_sig_key)
        if signature == rpc._special_secret_sig:
            return _redacted(value.get("value"))
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

    def Invoke(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        """Records each lookup's arguments and the provider it went through: what the mocks answer
        is made up, what the program asked for is not."""
        response = super().Invoke(request)
        if request.tok != "pulumi:pulumi:getResource":
            args = _plain(json_format.MessageToDict(request.args))
            self.synthesis.invokes.append({"token": request.tok, "args": args,
                                           "provider": _provider_name(request.provider)})
            # Lookups run in whatever order their inputs resolve; sorted, the record is stable.
            self.synthesis.invokes.sort(key=lambda invoke: json.dumps(invoke, sort_keys=True))
        return response

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
