from __future__ import annotations

import ipaddress

import pytest

from review.records import Synthesis
from tests.support.stacks import synthesized, synthesized_with

SUBNET = "aws:ec2/subnet:Subnet"


def subnets(synthesis: Synthesis, kind: str) -> list[dict]:
    return [r.inputs for r in synthesis.of_type(SUBNET) if r.name.startswith(f"network-{kind}-")]


def test_vpc_has_dns_support_and_hostnames(stack_synthesis: Synthesis) -> None:
    vpc = stack_synthesis.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["enableDnsSupport"] is True and vpc["enableDnsHostnames"] is True


@pytest.mark.parametrize(("stack", "zones"), [("dev", 2), ("staging", 3), ("prod", 3)])
def test_one_public_and_one_private_subnet_per_zone(stack: str, zones: int) -> None:
    synthesis = synthesized(stack)
    for kind in ("public", "private"):
        found = subnets(synthesis, kind)
        assert len(found) == zones
        assert len({s["availabilityZone"] for s in found}) == zones


def test_subnets_do_not_overlap_and_fit_in_the_vpc(stack_synthesis: Synthesis) -> None:
    vpc = ipaddress.ip_network(stack_synthesis.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    networks = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in stack_synthesis.of_type(SUBNET)]
    assert all(n.subnet_of(vpc) for n in networks)
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])


def test_load_balancer_discovery_tags(stack_synthesis: Synthesis) -> None:
    cluster_tag = f"kubernetes.io/cluster/model-serving-{stack_synthesis.stack}"
    for subnet in subnets(stack_synthesis, "public"):
        assert subnet["tags"]["kubernetes.io/role/elb"] == "1"
        assert subnet["tags"][cluster_tag] == "shared"
        assert "kubernetes.io/role/internal-elb" not in subnet["tags"]
        assert subnet["mapPublicIpOnLaunch"] is False
    for subnet in subnets(stack_synthesis, "private"):
        assert subnet["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert subnet["tags"][cluster_tag] == "shared"


@pytest.mark.parametrize(("stack", "nat_count"), [("dev", 1), ("staging", 1), ("prod", 3)])
def test_nat_gateways_per_stack(stack: str, nat_count: int) -> None:
    synthesis = synthesized(stack)
    nats = synthesis.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == nat_count
    assert len(synthesis.of_type("aws:ec2/eip:Eip")) == nat_count
    # Every private route table sends internet traffic through one of the NAT gateways.
    private_tables = [r for r in synthesis.of_type("aws:ec2/routeTable:RouteTable") if "private" in r.name]
    nat_ids = {route["natGatewayId"] for t in private_tables for route in t.inputs["routes"]}
    assert len(private_tables) == len(subnets(synthesis, "private"))
    assert len(nat_ids) == nat_count


def test_prod_routes_each_zone_through_its_own_nat() -> None:
    synthesis = synthesized("prod")
    nat_subnets = sorted(n.inputs["subnetId"] for n in synthesis.of_type("aws:ec2/natGateway:NatGateway"))
    public_ids = sorted({n.inputs["subnetId"] for n in synthesis.of_type("aws:ec2/natGateway:NatGateway")})
    assert nat_subnets == public_ids and len(public_ids) == 3


def test_public_route_table_goes_to_the_internet_gateway(stack_synthesis: Synthesis) -> None:
    public = stack_synthesis.one("aws:ec2/routeTable:RouteTable", "network-public").inputs
    assert public["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": public["routes"][0]["gatewayId"]}]
    assert public["routes"][0]["gatewayId"].startswith("igw-")


def test_s3_gateway_endpoint_on_private_route_tables(stack_synthesis: Synthesis) -> None:
    endpoint = stack_synthesis.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    region = {"dev": "us-east-1", "staging": "us-west-2", "prod": "eu-west-1"}[stack_synthesis.stack]
    assert endpoint["serviceName"] == f"com.amazonaws.{region}.s3"
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert len(endpoint["routeTableIds"]) == len(subnets(stack_synthesis, "private"))


def test_explicit_zones_are_used_in_order() -> None:
    synthesis = synthesized_with("dev", {"availabilityZones": ["us-east-1c", "us-east-1d"]})
    cidrs = {s["availabilityZone"]: s["cidrBlock"] for s in subnets(synthesis, "private")}
    assert cidrs == {"us-east-1c": "10.0.0.0/18", "us-east-1d": "10.0.64.0/18"}
