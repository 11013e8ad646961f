"""How the VPC's address space is cut into subnets (pure; used by settings and Network)."""

from __future__ import annotations

import ipaddress
import math

# A subnet smaller than this cannot hold a useful number of pods: the VPC CNI gives
# every pod its own VPC address (https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html).
MIN_SUBNET_PREFIX = 24


def subnet_prefix(vpc_cidr: str, zone_count: int) -> int:
    """Prefix length of each subnet when the VPC is split into one private and one public subnet per zone."""
    network = ipaddress.ip_network(vpc_cidr)
    return network.prefixlen + math.ceil(math.log2(2 * zone_count))


def split_vpc_cidr(vpc_cidr: str, zone_count: int) -> list[tuple[str, str]]:
    """(private, public) CIDR per zone: equal blocks, private ones first so they stay contiguous."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = list(network.subnets(new_prefix=subnet_prefix(vpc_cidr, zone_count)))
    half = len(blocks) // 2
    return [(str(blocks[i]), str(blocks[half + i])) for i in range(zone_count)]
