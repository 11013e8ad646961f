"""Network: the VPC, a public and a private subnet per zone, NAT, routes, and an S3 gateway endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.identity import StackIdentity


@dataclass(frozen=True)
class NetworkArgs:
    identity: StackIdentity
    vpc_cidr: str
    # (private, public) CIDR per zone, in zone order (infra/addressing.py).
    subnet_cidrs: Sequence[tuple[str, str]]
    nat_gateways: str  # single or perAz
    provider: aws.Provider
    availability_zones: Sequence[str] = ()  # empty: the region's first len(subnet_cidrs) standard zones
    # Further tags of the private subnets, where nodes run (Karpenter finds its subnets by a tag).
    private_subnet_tags: Mapping[str, str] = field(default_factory=dict)


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    private_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids_per_zone: list[pulumi.Output[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    zones: Sequence[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:network:Network", name, None, opts)
        identity = args.identity
        zone_count = len(args.subnet_cidrs)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(provider=args.provider)

        self.zones = list(args.availability_zones) or aws.get_availability_zones(
            state="available",
            # Local and Wavelength zones cannot host EKS control-plane ENIs.
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=invoke,
        ).names[:zone_count]
        if len(self.zones) < zone_count:
            raise ValueError(
                f"region {identity.region} offers {len(self.zones)} standard zones, azCount asks for "
                f"{zone_count}: pulumi config set azCount {len(self.zones)}")

        def tags(resource: str, **extra: str) -> dict[str, str]:
            return {**identity.tags, "Name": f"{identity.name}-{resource}", **extra}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            # EKS requires both for node registration and private endpoint DNS
            # (https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html).
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tags("vpc"),
            opts=child,
        )
        internet_gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags("igw"), opts=child)

        public_route_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": internet_gateway.id}],
            tags=tags("public"),
            opts=child,
        )

        # Load balancer controller discovers subnets by these tags
        # (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/subnet_discovery/).
        cluster_tag = {f"kubernetes.io/cluster/{identity.name}": "shared"}
        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for zone, (private_cidr, public_cidr) in zip(self.zones, args.subnet_cidrs, strict=True):
            public = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=public_cidr,
                availability_zone=zone,
                # Only load balancers live here; nothing needs an automatic public IP.
                map_public_ip_on_launch=False,
                tags=tags(f"public-{zone}", **cluster_tag, **{"kubernetes.io/role/elb": "1"}),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}", subnet_id=public.id, route_table_id=public_route_table.id, opts=child)
            private = aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=private_cidr,
                availability_zone=zone,
                tags=tags(f"private-{zone}", **cluster_tag, **{"kubernetes.io/role/internal-elb": "1"},
                          **args.private_subnet_tags),
                opts=child,
            )
            public_subnets.append(public)
            private_subnets.append(private)

        # perAz: each zone's private traffic leaves through its own NAT gateway and survives the
        # loss of another zone; single: one gateway, in the first zone, for all of them.
        nat_count = len(self.zones) if args.nat_gateways == "perAz" else 1
        nat_gateways: dict[str, aws.ec2.NatGateway] = {}
        for zone, public in list(zip(self.zones, public_subnets, strict=True))[:nat_count]:
            address = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags=tags(f"nat-{zone}"), opts=child)
            nat_gateways[zone] = aws.ec2.NatGateway(
                f"{name}-nat-{zone}",
                allocation_id=address.id,
                subnet_id=public.id,
                tags=tags(f"nat-{zone}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[internet_gateway]),
            )

        private_route_tables: list[aws.ec2.RouteTable] = []
        for zone, private in zip(self.zones, private_subnets, strict=True):
            nat = nat_gateways.get(zone, nat_gateways[self.zones[0]])
            route_table = aws.ec2.RouteTable(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags=tags(f"private-{zone}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}", subnet_id=private.id, route_table_id=route_table.id, opts=child)
            private_route_tables.append(route_table)

        # Image layers pulled from ECR are served from S3; a gateway endpoint is free and
        # keeps them off the NAT gateways' per-GB charge
        # (https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html#ecr-setting-up-s3-gateway).
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{identity.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_route_tables],
            tags=tags("s3"),
            opts=child,
        )

        self.vpc_id = vpc.id
        self.vpc_cidr = args.vpc_cidr
        self.private_subnet_ids_per_zone = [subnet.id for subnet in private_subnets]
        self.private_subnet_ids = pulumi.Output.all(*self.private_subnet_ids_per_zone)
        self.public_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in public_subnets])
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
        })
