"""DnsName: the endpoint's domain as an alias record for the load balancer the ALB controller made."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class DnsNameArgs:
    domain: str
    zone_id: pulumi.Input[str]
    load_balancer_hostname: pulumi.Input[str]
    provider: aws.Provider


class DnsName(pulumi.ComponentResource):
    def __init__(self, name: str, args: DnsNameArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("model-serving:workload:DnsName", name, None, opts)
        # Application load balancers of a region share one canonical hosted zone; an alias names it.
        balancer_zone = aws.lb.get_hosted_zone_id_output(
            load_balancer_type="application", opts=pulumi.InvokeOutputOptions(provider=args.provider)).id
        aws.route53.Record(
            f"{name}-alias", zone_id=args.zone_id, name=args.domain, type="A",
            aliases=[{"name": args.load_balancer_hostname, "zone_id": balancer_zone,
                      "evaluate_target_health": True}],
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})
